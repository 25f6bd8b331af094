"""The scheduler's lateness watcher for heartbeat monitors: where the probes would report a
failed check, it reports a missed ping (or a run that did not finish), through the outbox, in
the same transaction that records that the lateness was reported.

Each heartbeat row keeps `check_at`, the time the watcher must next look at it: the ping API
sets it to the heartbeat's deadline, a change of the monitor (created, its period, cron, time
zone or grace changed, paused, resumed, deleted) to "now", and the watcher, after looking, to
the next time the heartbeat may be late or be reported again (NULL while paused or deleted).
A poll is then one indexed read of the rows due, without the write lock (on SQLite, through a
read-only engine); only when some are due does it open a write transaction, which takes them
again with their lock (a ping or an edit committed in between wins).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from pingtower.common.db import read_only_engine
from pingtower.common.events import CheckCompleted, Outcome, utcnow
from pingtower.pinger.domain.heartbeat import (
    SCHEDULE_ERRORS,
    HeartbeatState,
    Late,
    expected_of,
    grace_of,
    lateness,
    next_check,
    reported,
)
from pingtower.pinger.store.database import PingerDatabase
from pingtower.pinger.store.tables import heartbeats, monitors

log = structlog.get_logger(__name__)

# Heartbeats looked at per poll (one short write transaction): a backlog (a leader that was
# down) drains at this many per poll instead of holding the write lock for all of it.
BATCH = 500

_DUE = (
    select(
        heartbeats,
        monitors.c.tenant,
        monitors.c.settings,
        monitors.c.interval_seconds,
        monitors.c.cron,
        monitors.c.timezone,
        monitors.c.created_at,
        monitors.c.paused,
        monitors.c.deleted_at,
    )
    .join(monitors, monitors.c.id == heartbeats.c.monitor_id)
    .order_by(heartbeats.c.check_at)
    .limit(BATCH)
)

_SET = (
    update(heartbeats)
    .where(heartbeats.c.monitor_id == bindparam("b_monitor_id"))
    .values(check_at=bindparam("b_check_at"), reported_late_at=bindparam("b_reported_late_at"))
)


def look_again_at(row: Any, now: datetime) -> tuple[datetime | None, HeartbeatState, Late | None]:
    """For a due row: when to look next (None: not while paused or deleted), its state after
    this look, and the lateness to report now (or None)."""
    state = HeartbeatState(
        row.created_at, row.last_ping_at, row.run_started_at, row.reported_late_at
    )
    if row.paused or row.deleted_at is not None:
        return None, state, None
    expected = expected_of(row.interval_seconds, row.cron, row.timezone)
    grace = grace_of(row.settings)
    try:
        late = lateness(state, now, expected, grace)
    except SCHEDULE_ERRORS:
        log.exception("heartbeat schedule unusable", monitor_id=str(row.monitor_id))
        return None, state, None
    if late is not None:
        state = reported(state, now)
    return next_check(state, now, expected, grace), state, late


class HeartbeatWatcher:
    def __init__(self, db: PingerDatabase) -> None:
        self.db = db
        self._reader: AsyncEngine | None = None

    async def close(self) -> None:
        """Give back the read-only engine (SQLite's; PostgreSQL reads on the main one)."""
        reader, self._reader = self._reader, None
        if reader is not None and reader is not self.db.engine:
            await reader.dispose()

    async def any_due(self, now: datetime) -> bool:
        """Whether some heartbeat is due at `now`: one indexed read, no write lock."""
        if self._reader is None:
            self._reader = read_only_engine(self.db.url, self.db.engine)
        async with self._reader.connect() as conn:
            found = await conn.scalar(
                select(heartbeats.c.monitor_id).where(heartbeats.c.check_at <= now).limit(1)
            )
        return found is not None

    async def report_late(self, now: datetime | None = None) -> int:
        """Look at the heartbeats due (up to BATCH) and report those late now; returns how many
        were reported."""
        now = now or utcnow()
        if not await self.any_due(now):
            return 0
        async with self.db.sessions() as session, session.begin():
            count = await self._look(session, now)
        if count:
            log.info("late heartbeats reported", count=count)
        return count

    async def _look(self, session: AsyncSession, now: datetime) -> int:
        # Locked, skipping rows a ping or an edit holds: that transaction sets `check_at`
        # itself, and this one must not overwrite it with a time from what it replaced.
        # Monitors too (without blocking the foreign keys of results): an edit committed
        # after this read began is read again rather than judged by its old schedule.
        query = _DUE.where(heartbeats.c.check_at <= now).with_for_update(
            of=[heartbeats, monitors], skip_locked=True, key_share=True
        )
        rows = (await session.execute(query)).all()
        changes: list[dict[str, Any]] = []
        count = 0
        for row in rows:
            check_at, state, late = look_again_at(row, now)
            changes.append(
                {
                    "b_monitor_id": row.monitor_id,
                    "b_check_at": check_at,
                    "b_reported_late_at": state.reported_late_at,
                }
            )
            if late is None:
                continue
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
            count += 1
        if changes:
            await session.execute(_SET, changes)
        return count
