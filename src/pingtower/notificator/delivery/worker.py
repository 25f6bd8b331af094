"""Delivery worker: claim, send, record, retry.

Claiming. A row is due when it is `pending` with `due_at <= now`, or `sending` with an expired
lease (its worker crashed), and no older message of the same alert to the same channel is still
`pending` or `sending` (see Ordering). A worker claims a batch with one statement:
`UPDATE deliveries SET status='sending', claimed_by=me, claimed_until=now+lease,
attempts=attempts+1 WHERE id IN (SELECT id ... <due> ORDER BY due_at LIMIT n) AND <due>
RETURNING id`; on PostgreSQL the inner SELECT is `FOR UPDATE SKIP LOCKED`, so concurrent
workers take disjoint rows without waiting on each other, and SQLite serialises writers with
BEGIN IMMEDIATE. The condition is re-checked by the UPDATE itself, so a row another worker took
in between is simply not returned.

Sending. One channel's messages go several at a time (`window` in flight, default 8); channels
in parallel. A rate-limited channel first reserves its slots: in one transaction (the channel's
row locked FOR UPDATE on PostgreSQL, so replicas take turns; BEGIN IMMEDIATE on SQLite) the
worker counts the sends in the last minute, inserts one `channel_sends` row per message it will
send now, and gives the others back, due when a slot frees. A limit therefore holds across
concurrent sends and replicas, and nothing is dropped.

Recording. The outcomes of a round (every channel's messages) are written together in one
transaction, and only `WHERE claimed_by = me AND status = 'sending'`: a worker whose lease
expired cannot overwrite the row another worker now owns. The silences that may cancel a
message are read in the claim's transaction, so a round costs two transactions (plus one per
rate-limited or quiet channel), whatever its size.

Ordering. A message waits while an older message (earlier `created_at`) of the same alert to the
same channel is `pending` or `sending`, so a recovery never overtakes its DOWN, even when the
DOWN is in flight on another replica or being retried: it goes in the round after the DOWN is
recorded. Messages queued by one decision (a DOWN and its reminders) share `created_at` and do
not wait for each other; their due times order them.

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
from sqlalchemy import Select, and_, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pingtower.common.egress import Networks
from pingtower.common.events import NotificationDelivered, NotificationFailed, utcnow
from pingtower.common.messaging.outbox import Outbox
from pingtower.common.waiting import woken
from pingtower.notificator.channels import (
    ChannelError,
    SendContext,
    SendResult,
    channel_type,
)
from pingtower.notificator.delivery.admission import admit
from pingtower.notificator.domain.backoff import retry_delay, should_retry
from pingtower.notificator.domain.decisions import PROBLEM_KINDS, UNTIL_ACKNOWLEDGED
from pingtower.notificator.domain.grouping import partition
from pingtower.notificator.domain.quiet_hours import QuietHours
from pingtower.notificator.domain.ratelimit import WINDOW as RATE_WINDOW
from pingtower.notificator.domain.rules import MonitorView
from pingtower.notificator.domain.silences import Silence, is_silenced
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
UNFINISHED = ("pending", "sending")


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None = None
    error: str | None = None
    permanent: bool = False
    cancelled: bool = False


@dataclass(frozen=True)
class Attempt:
    """One message (one row, or a group to one channel) and what became of it."""

    rows: list[Any]
    outcome: Outcome
    started_at: datetime
    duration_ms: int = 0
    retry_delay_seconds: float = 0.0
    # Its `channel_sends` row was written when the channel's rate limit granted the slot.
    slot_taken: bool = False


@dataclass(frozen=True)
class Round:
    """What one claim hands to the round: the rows, and the active silences of their
    workspaces, read in the same transaction (once per round, not once per message)."""

    rows: list[Any]
    silences: dict[str, list[Silence]]
    # With nothing to claim: when the next waiting message falls due, if any does.
    next_due: datetime | None = None


def _no_older_unfinished() -> Any:
    """No older message of the same alert to the same channel is still waiting or in flight
    (see Ordering in the module docstring)."""
    older = deliveries.alias("older")
    return ~exists().where(
        older.c.alert_id == deliveries.c.alert_id,
        older.c.channel_id == deliveries.c.channel_id,
        older.c.status.in_(UNFINISHED),
        older.c.created_at < deliveries.c.created_at,
    )


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
        allow_networks: Networks = (),
        poll_seconds: float = 1.0,
        batch: int = 50,
        window: int = 8,
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
        self.allow_networks = allow_networks
        self.poll_seconds = poll_seconds
        self.batch = batch
        if window < 1:
            raise ValueError("window must be at least 1")
        self.window = window
        # The lease outlasts a round (a channel's batch goes out `window` at a time, each send
        # bounded by its timeout, then is recorded), so a live worker never loses its rows.
        waves = -(-batch // window)
        self.lease = timedelta(
            seconds=max(lease_seconds, 4 * send_timeout_seconds, (waves + 1) * send_timeout_seconds)
        )
        self.send_timeout_seconds = send_timeout_seconds
        self.worker_id = worker_id or f"worker-{uuid.uuid4().hex[:12]}"
        self.random_fraction = random_fraction
        self._wakeup = asyncio.Event()
        self._next_due: datetime | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def wake(self) -> None:
        self._wakeup.set()

    # --- claiming ------------------------------------------------------------------------------

    def _due(self, now: datetime) -> Any:
        return and_(
            or_(
                and_(deliveries.c.status == "pending", deliveries.c.due_at <= now),
                and_(deliveries.c.status == "sending", deliveries.c.claimed_until < now),
            ),
            _no_older_unfinished(),
        )

    def _claimed_values(self, now: datetime) -> dict[str, Any]:
        return {
            "status": "sending",
            "claimed_by": self.worker_id,
            "claimed_until": now + self.lease,
            "attempts": deliveries.c.attempts + 1,
        }

    @staticmethod
    def _picked(session: AsyncSession, candidates: Select[Any]) -> Any:
        """The ids `candidates` selects, picked once for the UPDATE that claims them. Not
        correlated with that UPDATE. On PostgreSQL a `FOR UPDATE SKIP LOCKED` CTE: as a plain
        subquery the planner may re-run it per row, and each re-run skips the rows this very
        UPDATE just changed and picks the next ones, claiming far more than `batch`."""
        candidates = candidates.correlate(None)
        if is_postgresql(session):
            picked = candidates.with_for_update(skip_locked=True).cte("picked")
            return select(picked.c.id)
        return candidates.scalar_subquery()

    async def claim(self) -> list[Any]:
        """Claim up to `batch` due deliveries (see the module docstring); returns their rows."""
        return (await self._claim_round()).rows

    async def _claim_round(self) -> Round:
        now = utcnow()
        async with self.sessions() as session, session.begin():
            candidates = (
                select(deliveries.c.id)
                .where(self._due(now))
                .order_by(deliveries.c.due_at)
                .limit(self.batch)
            )
            claimed = list(
                (
                    await session.scalars(
                        update(deliveries)
                        .where(
                            deliveries.c.id.in_(self._picked(session, candidates)), self._due(now)
                        )
                        .values(**self._claimed_values(now))
                        .returning(deliveries.c.id)
                    )
                ).all()
            )
            if not claimed:
                next_due = await session.scalar(
                    select(func.min(deliveries.c.due_at)).where(
                        deliveries.c.status == "pending", deliveries.c.due_at > now
                    )
                )
                return Round([], {}, next_due)
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
                    .order_by(deliveries.c.created_at, deliveries.c.id)
                )
            ).all()
            silences = {
                tenant: await active_silences(session, tenant, now)
                for tenant in {row.tenant for row in rows}
            }
        return Round(list(rows), silences)

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
            waiting = and_(
                deliveries.c.status == "pending",
                deliveries.c.channel_id == channel_id,
                deliveries.c.kind == kind,
                deliveries.c.group_key == group_key,
                _no_older_unfinished(),
            )
            candidates = select(deliveries.c.id).where(waiting).limit(MAX_GROUP)
            mates.extend(
                (
                    await session.scalars(
                        update(deliveries)
                        .where(deliveries.c.id.in_(self._picked(session, candidates)), waiting)
                        .values(**self._claimed_values(now))
                        .returning(deliveries.c.id)
                    )
                ).all()
            )
        return mates

    # --- sending -------------------------------------------------------------------------------

    def _obsolete(self, row: Any, silences: dict[str, list[Silence]]) -> str | None:
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
            if is_silenced(silences.get(row.tenant, []), monitor, now):
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
                allow_networks=self.allow_networks,
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

    async def _attempt(self, rows: list[Any], gate: asyncio.Semaphore, slot_taken: bool) -> Attempt:
        async with gate:
            started_at = utcnow()
            started = clock.perf_counter()
            outcome = await self._send(rows)
            duration_ms = int((clock.perf_counter() - started) * 1000)
        # One draw for the whole group, so that a retried group stays together.
        attempt = max(row.attempts for row in rows)
        delay = retry_delay(attempt, self.backoff_seconds, random=self.random_fraction)
        return Attempt(rows, outcome, started_at, duration_ms, delay, slot_taken)

    async def _process_channel(
        self, messages: list[list[Any]], silences: dict[str, list[Silence]]
    ) -> list[Attempt]:
        """Send one channel's claimed messages, `window` at a time; returns what became of
        them, to be recorded with the rest of the round (rows held back are already given
        back)."""
        now = utcnow()
        live: list[list[Any]] = []
        cancelled: list[Attempt] = []
        for rows in messages:
            kept = []
            # A stable order: the first row's id is the message's delivery id, on every retry.
            for row in sorted(rows, key=lambda r: (r.created_at, str(r.id))):
                reason = self._obsolete(row, silences)
                if reason is None:
                    kept.append(row)
                else:
                    cancelled.append(
                        Attempt(
                            [row], Outcome(False, error=f"cancelled: {reason}", cancelled=True), now
                        )
                    )
            if kept:
                live.append(kept)
        if not live or await self._held_by_quiet_hours(live):
            return cancelled
        live.sort(key=lambda rows: (rows[0].created_at, str(rows[0].id)))
        limited = live[0][0].channel_rate_limit is not None
        if limited:
            live = await self._reserve_slots(live)
        gate = asyncio.Semaphore(self.window)
        attempts = await asyncio.gather(*(self._attempt(rows, gate, limited) for rows in live))
        return cancelled + list(attempts)

    async def _held_by_quiet_hours(self, messages: list[list[Any]]) -> bool:
        spec = messages[0][0].channel_quiet_hours
        if not spec:
            return False
        window = QuietHours(
            time.fromisoformat(spec["start"]), time.fromisoformat(spec["end"]), spec["timezone"]
        )
        until = window.hold_until(utcnow())
        if until is None:
            return False
        async with self.sessions() as session, session.begin():
            await self._release(session, [row for rows in messages for row in rows], until)
        return True

    async def _release(self, session: AsyncSession, rows: list[Any], until: datetime) -> None:
        """Give claimed rows back, due at `until`; the claim does not count as an attempt."""
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

    async def _reserve_slots(self, messages: list[list[Any]]) -> list[list[Any]]:
        """Take as many slots of the channel's rate limit as there are messages that may go
        now (oldest first), and give the others back, due when a slot frees; returns the
        messages that may go. Slots are taken before sending, so concurrent sends (and other
        replicas) cannot overshoot the limit."""
        first = messages[0][0]
        now = utcnow()
        async with self.sessions() as session, session.begin():
            if is_postgresql(session):
                # Replicas take turns on one channel's window; other channels are not blocked.
                await session.execute(
                    select(channels.c.id).where(channels.c.id == first.channel_id).with_for_update()
                )
            sent = (
                await session.scalars(
                    select(channel_sends.c.sent_at).where(
                        channel_sends.c.channel_id == first.channel_id,
                        channel_sends.c.sent_at > now - RATE_WINDOW,
                    )
                )
            ).all()
            admission = admit(sent, now, first.channel_rate_limit, len(messages))
            if admission.count:
                await session.execute(
                    channel_sends.insert(),
                    [{"channel_id": first.channel_id, "sent_at": now}] * admission.count,
                )
            if admission.rest_due is not None:
                held = [row for rows in messages[admission.count :] for row in rows]
                await self._release(session, held, admission.rest_due)
        return messages[: admission.count]

    # --- recording -----------------------------------------------------------------------------

    async def _record(self, attempts: list[Attempt]) -> None:
        """Record the outcomes of a round's messages in one short transaction, in bulk: a
        batch of fifty messages, or a grouped message of a hundred rows, costs a handful of
        statements, not hundreds (and SQLite, one writer at a time, one turn)."""
        now = utcnow()
        entries = [
            (row, attempt, self._plan(row, attempt.outcome, now, attempt.retry_delay_seconds))
            for attempt in attempts
            for row in attempt.rows
        ]
        tried = [attempt for attempt in attempts if not attempt.outcome.cancelled]
        labels: list[tuple[str, str]] = []
        async with self.sessions() as session, session.begin():
            counted = [attempt for attempt in tried if not attempt.slot_taken]
            if counted:
                await session.execute(
                    channel_sends.insert(),
                    [
                        {"channel_id": attempt.rows[0].channel_id, "sent_at": attempt.started_at}
                        for attempt in counted
                    ],
                )
            if tried:
                await session.execute(
                    delivery_attempts.insert(),
                    [
                        {
                            "delivery_id": row.id,
                            "attempt": row.attempts,
                            "worker": self.worker_id,
                            "started_at": attempt.started_at,
                            "duration_ms": attempt.duration_ms,
                            "ok": attempt.outcome.ok,
                            "status_code": attempt.outcome.status_code,
                            "error": attempt.outcome.error,
                        }
                        for attempt in tried
                        for row in attempt.rows
                    ],
                )
            # Rows with the same new values are updated together; only rows this worker still
            # holds are changed (a worker whose lease expired records nothing).
            batches: dict[tuple[tuple[str, Any], ...], list[Any]] = {}
            for row, _, (_, values, _) in entries:
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
            for row, _, (label, _, event) in entries:
                if row.id not in mine:
                    log.warning("lease lost before recording", delivery_id=str(row.id))
                    continue
                labels.append((row.channel_type or "unknown", label))
                if event is not None:
                    await self.outbox.add(session, event, tenant=row.tenant)
        for channel_kind, label in labels:
            ATTEMPTS.labels(channel_kind, label).inc()
        for attempt in tried:
            if attempt.outcome.error:
                first = attempt.rows[0]
                # The error text comes from the receiver or the network, never from our secrets.
                log.info("delivery attempt failed", delivery_id=str(first.id),
                         messages=len(attempt.rows), attempt=first.attempts,
                         error=attempt.outcome.error)  # fmt: skip

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
        """One round: claim, send (channels in parallel), record it all at once."""
        claimed = await self._claim_round()
        self._next_due = claimed.next_due
        rows = claimed.rows
        if rows:
            groups = partition(
                rows, lambda r: (r.channel_id, r.kind, r.group_key) if r.group_key else None
            )
            by_channel = partition(groups, lambda group: group[0].channel_id)
            # A channel that fails (its database step) must not cost the others their records:
            # a message sent but not recorded is sent again once its lease expires.
            outcomes = await asyncio.gather(
                *(self._process_channel(c, claimed.silences) for c in by_channel),
                return_exceptions=True,
            )
            attempts: list[Attempt] = []
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    if not isinstance(outcome, Exception):
                        raise outcome
                    log.error("delivery of a channel's batch failed", exc_info=outcome)
                else:
                    attempts.extend(outcome)
            if attempts:
                await self._record(attempts)
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
            # After a round with work, look again at once: more may be due, and a message that
            # waited for one just recorded (a recovery after its DOWN) may go now. Every claimed
            # row leaves the round recorded or given back for later, so this cannot spin.
            if handled == 0:
                await woken(self._wakeup, self._idle_seconds())

    def _idle_seconds(self) -> float:
        """How long to wait for a wake-up: until the next waiting message falls due (a retry,
        a rule's delay, a grouping window, a rate limit's slot), at most `poll_seconds`. The
        poll remains for messages other replicas queue, which wake no one here."""
        if self._next_due is None:
            return self.poll_seconds
        until_due = (self._next_due - utcnow()).total_seconds()
        return min(self.poll_seconds, max(0.0, until_due))

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
