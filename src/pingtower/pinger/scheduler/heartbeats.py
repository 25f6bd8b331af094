"""The scheduler's lateness watcher for heartbeat monitors: where the probes would report a
failed check, it reports a missed ping (or a run that did not finish), through the outbox, in
the same transaction that records that the lateness was reported."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select, update

from pingtower.common.events import CheckCompleted, Outcome, utcnow
from pingtower.pinger.domain.heartbeat import HeartbeatState, lateness
from pingtower.pinger.store.database import PingerDatabase
from pingtower.pinger.store.tables import heartbeats, monitors

log = structlog.get_logger(__name__)


class HeartbeatWatcher:
    def __init__(self, db: PingerDatabase) -> None:
        self.db = db

    async def report_late(self, now: datetime | None = None) -> int:
        """Report every heartbeat that is late now; returns how many were reported."""
        now = now or utcnow()
        reported = 0
        async with self.db.sessions() as session, session.begin():
            rows = (
                await session.execute(
                    select(
                        heartbeats,
                        monitors.c.tenant,
                        monitors.c.settings,
                        monitors.c.interval_seconds,
                        monitors.c.created_at,
                    )
                    .join(monitors, monitors.c.id == heartbeats.c.monitor_id)
                    .where(monitors.c.deleted_at.is_(None), monitors.c.paused.is_(False))
                )
            ).all()
            for row in rows:
                state = HeartbeatState(
                    row.created_at, row.last_ping_at, row.run_started_at, row.reported_late_at
                )
                grace = timedelta(seconds=int(row.settings.get("grace_seconds", 60)))
                late = lateness(state, now, timedelta(seconds=row.interval_seconds), grace)
                if late is None:
                    continue
                await session.execute(
                    update(heartbeats)
                    .where(heartbeats.c.monitor_id == row.monitor_id)
                    .values(reported_late_at=now)
                )
                result = CheckCompleted(
                    check_id=uuid.uuid4(),
                    monitor_id=row.monitor_id,
                    region="push",
                    scheduled_at=now,
                    started_at=late.deadline,
                    finished_at=now,
                    outcome=Outcome.DOWN,
                    error_kind=late.kind,
                    error_message=late.message,
                )
                await self.db.outbox.add(session, result, tenant=row.tenant, occurred_at=now)
                reported += 1
        if reported:
            log.info("late heartbeats reported", count=reported)
        return reported
