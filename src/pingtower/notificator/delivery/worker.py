"""Delivery worker: claim, send, record, retry.

Claiming. A row is due when it is `pending` with `due_at <= now`, or `sending` with an expired
lease (its worker crashed). A worker claims a batch in one short transaction:
- PostgreSQL: `SELECT id ... FOR UPDATE SKIP LOCKED` so concurrent workers take disjoint rows
  without waiting on each other, then the UPDATE below;
- both databases: `UPDATE deliveries SET status='sending', claimed_by=me, claimed_until=now+lease,
  attempts=attempts+1 WHERE id IN (...) AND <still due> RETURNING id`. The condition is re-checked
  by the UPDATE itself, so a row another worker took in between is simply not returned (SQLite
  serialises writers with BEGIN IMMEDIATE; PostgreSQL re-evaluates the WHERE after a concurrent
  update commits).
Recording. The outcome is written only `WHERE claimed_by = me AND status = 'sending'`: a worker
whose lease expired cannot overwrite the row another worker now owns.

Guarantee. A message is sent once per claim; a crash after the receiver accepted it and before
the outcome was recorded lets the lease expire and the message is sent once more: at most one
repeat, and receivers can drop it by the `X-PingTower-Delivery` id, which stays the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time as clock
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

import structlog
from prometheus_client import Counter, Histogram
from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pingtower.common.events import NotificationDelivered, NotificationFailed, utcnow
from pingtower.common.messaging.outbox import Outbox
from pingtower.notificator.channels import (
    ChannelError,
    SendContext,
    SendResult,
    channel_type,
)
from pingtower.notificator.domain.backoff import retry_delay, should_retry
from pingtower.notificator.domain.decisions import PROBLEM_KINDS, UNTIL_ACKNOWLEDGED
from pingtower.notificator.domain.grouping import partition
from pingtower.notificator.domain.quiet_hours import QuietHours
from pingtower.notificator.domain.ratelimit import WINDOW as RATE_WINDOW
from pingtower.notificator.domain.ratelimit import hold_until
from pingtower.notificator.domain.rules import MonitorView
from pingtower.notificator.domain.silences import is_silenced
from pingtower.notificator.rendering import render_group, render_message
from pingtower.notificator.secrets import SecretBox
from pingtower.notificator.store.rules import active_silences
from pingtower.notificator.store.sql import is_postgresql
from pingtower.notificator.store.tables import (
    alerts,
    channel_sends,
    channels,
    deliveries,
    delivery_attempts,
    monitors,
)

log = structlog.get_logger(__name__)

ATTEMPTS = Counter(
    "pingtower_notificator_delivery_attempts_total",
    "Delivery attempts by channel type and outcome",
    ["channel_type", "outcome"],
)
HELD_STATUSES = frozenset({"maintenance", "paused"})
MAX_GROUP = 1000  # rows in one grouped message at most
HELD = Counter(
    "pingtower_notificator_held_total",
    "Messages held back by a channel's rate limit or quiet hours",
)
SEND_SECONDS = Histogram(
    "pingtower_notificator_send_seconds", "Time to send one message", ["channel_type"]
)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None = None
    error: str | None = None
    permanent: bool = False
    cancelled: bool = False


class DeliveryWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        box: SecretBox,
        outbox: Outbox,
        *,
        max_attempts: int,
        backoff_seconds: float,
        allow_private: bool,
        poll_seconds: float = 1.0,
        batch: int = 50,
        lease_seconds: float = 120.0,
        send_timeout_seconds: float = 15.0,
        worker_id: str | None = None,
        random_fraction: Callable[[], float] = random.random,
    ) -> None:
        self.sessions = sessions
        self.box = box
        self.outbox = outbox
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.allow_private = allow_private
        self.poll_seconds = poll_seconds
        self.batch = batch
        # The lease outlasts a send's timeout by far, so a live worker never loses its rows.
        self.lease = timedelta(seconds=max(lease_seconds, 4 * send_timeout_seconds))
        self.send_timeout_seconds = send_timeout_seconds
        self.worker_id = worker_id or f"worker-{uuid.uuid4().hex[:12]}"
        self.random_fraction = random_fraction
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def wake(self) -> None:
        self._wakeup.set()

    # --- claiming ------------------------------------------------------------------------------

    def _due(self, now: datetime) -> Any:
        return or_(
            and_(deliveries.c.status == "pending", deliveries.c.due_at <= now),
            and_(deliveries.c.status == "sending", deliveries.c.claimed_until < now),
        )

    async def claim(self) -> list[Any]:
        """Claim up to `batch` due deliveries (see the module docstring); returns their rows."""
        now = utcnow()
        async with self.sessions() as session, session.begin():
            candidates = (
                select(deliveries.c.id)
                .where(self._due(now))
                .order_by(deliveries.c.due_at)
                .limit(self.batch)
            )
            if is_postgresql(session):
                candidates = candidates.with_for_update(skip_locked=True)
            ids = list((await session.scalars(candidates)).all())
            if not ids:
                return []
            claimed = list(
                (
                    await session.scalars(
                        update(deliveries)
                        .where(deliveries.c.id.in_(ids), self._due(now))
                        .values(
                            status="sending",
                            claimed_by=self.worker_id,
                            claimed_until=now + self.lease,
                            attempts=deliveries.c.attempts + 1,
                        )
                        .returning(deliveries.c.id)
                    )
                ).all()
            )
            if not claimed:
                return []
            claimed.extend(await self._claim_group_mates(session, claimed, now))
            rows = (
                await session.execute(
                    select(
                        deliveries,
                        channels.c.type.label("channel_type"),
                        channels.c.settings.label("channel_settings"),
                        channels.c.secrets.label("channel_secrets"),
                        channels.c.enabled.label("channel_enabled"),
                        channels.c.rate_limit_per_minute.label("channel_rate_limit"),
                        channels.c.quiet_hours.label("channel_quiet_hours"),
                        alerts.c.status.label("alert_status"),
                        alerts.c.acknowledged_at.label("alert_acknowledged_at"),
                        monitors.c.status.label("monitor_status"),
                    )
                    .outerjoin(channels, channels.c.id == deliveries.c.channel_id)
                    .outerjoin(monitors, monitors.c.monitor_id == deliveries.c.monitor_id)
                    .outerjoin(alerts, alerts.c.id == deliveries.c.alert_id)
                    .where(deliveries.c.id.in_(claimed))
                )
            ).all()
        return list(rows)

    async def _claim_group_mates(
        self, session: AsyncSession, claimed: list[Any], now: datetime
    ) -> list[Any]:
        """Grouping: with a grouped row, claim every pending row of its (channel, kind, group),
        due or not yet, so that what waits together goes out as one message."""
        groups = (
            await session.execute(
                select(deliveries.c.channel_id, deliveries.c.kind, deliveries.c.group_key)
                .where(deliveries.c.id.in_(claimed), deliveries.c.group_key.is_not(None))
                .distinct()
            )
        ).all()
        mates: list[Any] = []
        for channel_id, kind, group_key in groups:
            candidates = (
                select(deliveries.c.id)
                .where(
                    deliveries.c.status == "pending",
                    deliveries.c.channel_id == channel_id,
                    deliveries.c.kind == kind,
                    deliveries.c.group_key == group_key,
                )
                .limit(MAX_GROUP)
            )
            if is_postgresql(session):
                candidates = candidates.with_for_update(skip_locked=True)
            ids = list((await session.scalars(candidates)).all())
            if not ids:
                continue
            mates.extend(
                (
                    await session.scalars(
                        update(deliveries)
                        .where(deliveries.c.id.in_(ids), deliveries.c.status == "pending")
                        .values(
                            status="sending",
                            claimed_by=self.worker_id,
                            claimed_until=now + self.lease,
                            attempts=deliveries.c.attempts + 1,
                        )
                        .returning(deliveries.c.id)
                    )
                ).all()
            )
        return mates

    # --- sending -------------------------------------------------------------------------------

    async def _obsolete(self, row: Any) -> str | None:
        """Why a claimed row should not be sent any more, if it should not."""
        if row.channel_type is None:
            return "channel deleted"
        if not row.channel_enabled:
            return "channel disabled"
        if row.kind in UNTIL_ACKNOWLEDGED and (
            row.alert_status != "open" or row.alert_acknowledged_at is not None
        ):
            return "alert acknowledged or resolved"
        if row.kind in PROBLEM_KINDS and row.monitor_status in HELD_STATUSES:
            # The monitor went into maintenance (or was paused) while the message waited.
            return f"monitor is {row.monitor_status}"
        if row.kind in PROBLEM_KINDS:
            # A silence created after the message was queued still holds it back.
            monitor = MonitorView(
                monitor_id=row.monitor_id,
                tenant=row.tenant,
                name="",
                tags=tuple(row.context.get("monitor", {}).get("tags", ())),
            )
            now = utcnow()
            async with self.sessions() as session:
                if is_silenced(await active_silences(session, row.tenant, now), monitor, now):
                    return "silenced"
        return None

    async def _send(self, rows: list[Any]) -> Outcome:
        """Send one message about `rows` (one row, or a group to one channel)."""
        row = rows[0]
        kind = channel_type(row.channel_type)
        try:
            settings = kind.settings_model.model_validate(
                {**row.channel_settings, **self.box.open(row.channel_secrets)}
            )
            if len(rows) == 1:
                message = render_message(row.kind, dict(row.context))
            else:
                message = render_group(row.kind, [dict(r.context) for r in rows])
            context = SendContext(
                delivery_id=str(row.id),
                allow_private=self.allow_private,
                timeout_seconds=self.send_timeout_seconds,
            )
            with SEND_SECONDS.labels(kind.name).time():
                result: SendResult = await kind.send(message, settings, context)
        except ChannelError as exc:
            return Outcome(
                ok=False, status_code=exc.status_code, error=str(exc), permanent=exc.permanent
            )
        except Exception as exc:  # a bug in a channel must not stop the worker
            log.exception("channel raised unexpectedly", delivery_id=str(row.id))
            return Outcome(ok=False, error=f"internal error: {type(exc).__name__}")
        return Outcome(ok=True, status_code=result.status_code)

    async def _process(self, rows: list[Any]) -> None:
        started_at = utcnow()
        live = []
        # A stable order: the first row's id is the message's delivery id, on every retry.
        for row in sorted(rows, key=lambda r: (r.created_at, str(r.id))):
            reason = await self._obsolete(row)
            if reason is None:
                live.append(row)
            else:
                cancelled = Outcome(ok=False, error=f"cancelled: {reason}", cancelled=True)
                await self._record_all([row], cancelled, started_at, 0)
        if not live:
            return
        if await self._held_by_quiet_hours(live) or await self._held_by_rate_limit(live):
            return
        started = clock.perf_counter()
        outcome = await self._send(live)
        duration_ms = int((clock.perf_counter() - started) * 1000)
        # One draw for the whole group, so that a retried group stays together.
        attempt = max(row.attempts for row in live)
        delay = retry_delay(attempt, self.backoff_seconds, random=self.random_fraction)
        await self._record_all(live, outcome, started_at, duration_ms, delay)

    async def _held_by_quiet_hours(self, rows: list[Any]) -> bool:
        spec = rows[0].channel_quiet_hours
        if not spec:
            return False
        window = QuietHours(
            time.fromisoformat(spec["start"]), time.fromisoformat(spec["end"]), spec["timezone"]
        )
        until = window.hold_until(utcnow())
        if until is None:
            return False
        await self._release(rows, until)
        return True

    async def _release(self, rows: list[Any], until: datetime) -> None:
        """Give claimed rows back, due at `until`; the claim does not count as an attempt."""
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(deliveries)
                .where(
                    deliveries.c.id.in_([row.id for row in rows]),
                    deliveries.c.claimed_by == self.worker_id,
                    deliveries.c.status == "sending",
                )
                .values(
                    status="pending",
                    due_at=until,
                    claimed_by=None,
                    claimed_until=None,
                    attempts=deliveries.c.attempts - 1,
                )
            )
        HELD.inc(len(rows))

    async def _held_by_rate_limit(self, rows: list[Any]) -> bool:
        """If the channel's rate limit is reached, give the rows back, due when a slot frees
        (the claim does not count as an attempt), and say so."""
        limit = rows[0].channel_rate_limit
        if limit is None:
            return False
        now = utcnow()
        async with self.sessions() as session, session.begin():
            sent = (
                await session.scalars(
                    select(channel_sends.c.sent_at).where(
                        channel_sends.c.channel_id == rows[0].channel_id,
                        channel_sends.c.sent_at > now - RATE_WINDOW,
                    )
                )
            ).all()
        until = hold_until(sent, now, limit)
        if until is None:
            return False
        await self._release(rows, until)
        return True

    # --- recording -----------------------------------------------------------------------------

    async def _record_all(
        self,
        rows: list[Any],
        outcome: Outcome,
        started_at: datetime,
        duration_ms: int,
        retry_delay_seconds: float = 0.0,
    ) -> None:
        """Record one outcome for `rows` (one message) in one short transaction, in bulk: a
        grouped message of a hundred rows costs a handful of statements, not hundreds."""
        now = utcnow()
        plans = [self._plan(row, outcome, now, retry_delay_seconds) for row in rows]
        labels: list[str] = []
        async with self.sessions() as session, session.begin():
            if not outcome.cancelled:
                await session.execute(
                    channel_sends.insert().values(channel_id=rows[0].channel_id, sent_at=started_at)
                )
                await session.execute(
                    delivery_attempts.insert(),
                    [
                        {
                            "delivery_id": row.id,
                            "attempt": row.attempts,
                            "worker": self.worker_id,
                            "started_at": started_at,
                            "duration_ms": duration_ms,
                            "ok": outcome.ok,
                            "status_code": outcome.status_code,
                            "error": outcome.error,
                        }
                        for row in rows
                    ],
                )
            # Rows with the same new values are updated together; only rows this worker still
            # holds are changed (a worker whose lease expired records nothing).
            batches: dict[tuple[tuple[str, Any], ...], list[Any]] = {}
            for row, (_, values, _) in zip(rows, plans, strict=True):
                batches.setdefault(tuple(sorted(values.items())), []).append(row.id)
            mine: set[Any] = set()
            for key, ids in batches.items():
                mine.update(
                    (
                        await session.scalars(
                            update(deliveries)
                            .where(
                                deliveries.c.id.in_(ids),
                                deliveries.c.claimed_by == self.worker_id,
                                deliveries.c.status == "sending",
                            )
                            .values(**dict(key))
                            .returning(deliveries.c.id)
                        )
                    ).all()
                )
            for row, (label, _, event) in zip(rows, plans, strict=True):
                if row.id not in mine:
                    log.warning("lease lost before recording", delivery_id=str(row.id))
                    continue
                labels.append(label)
                if event is not None:
                    await self.outbox.add(session, event, tenant=row.tenant)
        first = rows[0]
        for label in labels:
            ATTEMPTS.labels(first.channel_type or "unknown", label).inc()
        if outcome.error and not outcome.cancelled:
            # The error text comes from the receiver or the network, never from our secrets.
            log.info("delivery attempt failed", delivery_id=str(first.id), messages=len(rows),
                     attempt=first.attempts, outcomes=sorted(set(labels)),
                     error=outcome.error)  # fmt: skip

    def _plan(
        self, row: Any, outcome: Outcome, now: datetime, retry_delay_seconds: float
    ) -> tuple[str, dict[str, Any], NotificationDelivered | NotificationFailed | None]:
        """(metric label, new column values, event to emit) for one row's outcome."""
        attempt = row.attempts
        values: dict[str, Any] = {
            "claimed_by": None,
            "claimed_until": None,
            "last_status_code": outcome.status_code,
            "last_error": outcome.error,
        }
        if outcome.cancelled:
            values.update(status="cancelled", finished_at=now)
            return "cancelled", values, None
        if outcome.ok:
            values.update(status="delivered", finished_at=now)
            delivered = NotificationDelivered(
                notification_id=row.id,
                channel_id=row.channel_id,
                channel_type=row.channel_type,
                monitor_id=row.monitor_id,
                kind=row.kind,
                attempts=attempt,
            )
            return "delivered", values, delivered
        if should_retry(attempt, self.max_attempts, permanent=outcome.permanent):
            values.update(status="pending", due_at=now + timedelta(seconds=retry_delay_seconds))
            return "retry", values, None
        values.update(status="failed", finished_at=now)
        failed = NotificationFailed(
            notification_id=row.id,
            channel_id=row.channel_id,
            channel_type=row.channel_type or "unknown",
            monitor_id=row.monitor_id,
            kind=row.kind,
            attempts=attempt,
            error=outcome.error,
        )
        return "failed", values, failed

    # --- loop ----------------------------------------------------------------------------------

    async def run_once(self) -> int:
        rows = await self.claim()
        if rows:
            groups = partition(
                rows, lambda r: (r.channel_id, r.kind, r.group_key) if r.group_key else None
            )
            # Channels in parallel; one channel's messages one after the other, so that this
            # worker counts its own sends exactly against the channel's rate limit.
            by_channel = partition(groups, lambda group: group[0].channel_id)

            async def one_channel(channel_groups: list[list[Any]]) -> None:
                for group in channel_groups:
                    await self._process(group)

            await asyncio.gather(*(one_channel(c) for c in by_channel))
        return len(rows)

    async def run(self) -> None:
        while not self._stopping:
            self._wakeup.clear()
            try:
                handled = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery worker round failed; retrying")
                handled = 0
            if handled < self.batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self.poll_seconds)

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self.run(), name=f"delivery-{self.worker_id}")

    async def stop(self) -> None:
        """Let the current round finish (its sends and their records), then stop; cancel only
        if it overruns. Cancelling in the middle of a database call can leave a SQLite
        connection half-closed, and a send cut short is a send repeated after the lease."""
        if self._task is None:
            return
        self._stopping = True
        self._wakeup.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self.send_timeout_seconds + 5)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
