"""The scheduler role: keeps every active monitor's next run in an in-memory heap and publishes
a check job per region when one is due.

Only the leader schedules. On PostgreSQL leadership is a session advisory lock held on a
dedicated connection (it dies with the process or its connection); followers try again every
`leader_retry_seconds`, so a new leader takes over within a few seconds. SQLite means one
embedded process: always the leader.

It learns of changes by polling, not by consuming its own monitor.* events: the table is the
truth, a follower that takes over must read it anyway, and a poll of `updated_at` (tombstones
included, so deletions show up too) and of `monitor_states.changed_at` (for PENDING, which
switches to the retry interval) notices every change within `poll_seconds` without adding a
queue per scheduler replica. The poll re-reads a small overlap window (before the previous
read) so that a transaction that committed late with an older timestamp is not missed, and
every `reconcile_seconds` a full comparison of ids and `updated_at` with the table catches the
ones that committed later still (queued SQLite writers were measured committing 20 s after
their timestamp under load).

Heartbeat (push) monitors get no jobs: the leader's `HeartbeatWatcher` reports their silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from heapq import heapify, heappop, heappush
from operator import attrgetter
from typing import Any

import structlog
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import String, func, null, select, text, type_coerce, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from pingtower.common.events import Envelope, Status, utcnow
from pingtower.common.messaging.bus import Bus, UnpublishedJob
from pingtower.common.runtime import Component
from pingtower.pinger.checks.base import get_check
from pingtower.pinger.domain.monitor import InvalidSettingError
from pingtower.pinger.domain.schedule import (
    next_cron,
    next_run,
    offset_fraction,
    ranked_fractions,
)
from pingtower.pinger.scheduler.heartbeats import HeartbeatWatcher
from pingtower.pinger.scheduler.jobs import JobTemplate, templates_of
from pingtower.pinger.store.database import PingerDatabase
from pingtower.pinger.store.tables import monitor_states, monitors

log = structlog.get_logger(__name__)

JOBS_PUBLISHED = Counter("pingtower_pinger_jobs_published_total", "Check jobs published")
JOBS_UNPUBLISHED = Counter(
    "pingtower_pinger_jobs_unpublished_total",
    "Check jobs the bus did not take even after a retry (their check does not run)",
)
LATENESS = Histogram(
    "pingtower_pinger_schedule_lateness_seconds",
    "How late each tick published its most overdue job after that job's scheduled time",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
IS_LEADER = Gauge("pingtower_pinger_scheduler_leader", "1 while this process is the leader")
SCHEDULED = Gauge("pingtower_pinger_scheduled_monitors", "Monitors in the scheduler's heap")

LEADER_LOCK = zlib.crc32(b"pingtower.pinger.scheduler")
POLL_OVERLAP = timedelta(seconds=5)
RECONCILE_CHUNK = 500
RECONCILE_PAGE = 2000
# Jobs handed to the bus at once: a tick's due jobs go out together (the bus bounds how many
# await their confirmation at a time); a huge tick is cut so its first jobs leave early.
PUBLISH_BATCH = 5000
# The scheduler wakes at most once per tick and publishes together the jobs due by then. Woken
# for each due monitor, it woke 200 times a second at 200 checks a second, each time for one
# job. 25 ms adds at most 25 ms (12 on average) to a check's lateness, far under what users
# notice or the 1 s target, and caps the wake-ups at 40 a second at any number of monitors (at
# 50,000 every 30 s, 42 jobs a tick); a longer tick saves little more and makes the probe's
# bursts larger.
TICK_SECONDS = 0.025
RESPREAD_SECONDS = 10.0
# What a schedule entry is built from (whole rows also decoded every monitor's tags and SLO).
SCHEDULE_COLUMNS = (
    monitors.c.id,
    monitors.c.tenant,
    monitors.c.type,
    monitors.c.target,
    monitors.c.settings,
    monitors.c.timeout_seconds,
    monitors.c.regions,
    monitors.c.interval_seconds,
    monitors.c.retry_interval_seconds,
    monitors.c.updated_at,
    monitors.c.cron,
    monitors.c.timezone,
    monitors.c.paused,
    monitors.c.deleted_at,
)
_SPREAD_ORDER = attrgetter("retry_slot", "id")  # `retry_slot` is the id's hash
RECONCILED = Counter(
    "pingtower_pinger_scheduler_reconciled_total",
    "Monitors whose change the incremental poll missed and the full reconciliation found",
)


@dataclass(slots=True)
class Entry:
    id: uuid.UUID
    # The monitor's job in each of its regions, made again only when its row changes.
    jobs: tuple[JobTemplate, ...]
    interval: int
    retry_interval: int
    updated_at: datetime
    # While PENDING the monitor is on the retry interval's grid, at its own hash; the hash also
    # orders the group's even spread (kept here, not hashed again for every respread).
    retry_slot: float
    cron: str | None = None
    timezone: str = "UTC"
    pending: bool = False
    # The sequence number of its live heap item (0: none); the heap holds the entry itself, so
    # a due run needs no lookup by id (a dict lookup hashing a UUID in Python per job).
    queued: int = 0
    # The reconciliation round that last found it in the table, or that began before a read
    # of its row: one not found by the end of a round is no longer active.
    reconciled: int = 0
    # Position on the interval's grid: evenly spread among the monitors of the same interval.
    slot: float = 0.0
    last_due: float | None = None
    # The table's `updated_at` as the driver returns it (before SQLAlchemy makes it a datetime),
    # once a reconciliation found it equal to `updated_at`: the next compares the raw values.
    stamp_read: Any = None


@dataclass(slots=True)
class _Reconciliation:
    """A reconciliation under way: its round, how its stamps are parsed, the last id read."""

    round: int
    to_stamp: Callable[[Any], Any] | None
    # The schedule's entries by their id's integer, as the round began: a page's ids are
    # looked up without making a UUID each (its `__init__` checks were half of a round's CPU)
    # or hashing one in Python. Entries made during the round are found by their UUID.
    by_int: dict[int, Entry]
    after: uuid.UUID | None = None
    missed: int = 0  # rows the poll had missed, read whole and applied


def _uuid_of(value: int) -> uuid.UUID:
    """`uuid.UUID(int=value)` without its checks in Python, for a value read from the table
    (so in range); its two slots set as `uuid.UUID` does."""
    made = object.__new__(uuid.UUID)
    object.__setattr__(made, "int", value)  # UUID's own __setattr__ refuses: it is immutable
    object.__setattr__(made, "is_safe", uuid.SafeUUID.unknown)
    return made


def _int_of(raw_id: Any) -> int:
    """A monitor id as the driver returns it when not typed: asyncpg's UUID, or the 32 hex
    digits SQLAlchemy's `Uuid` stores in SQLite."""
    return raw_id.int if isinstance(raw_id, uuid.UUID) else int(raw_id, 16)


def _log_unpublished(unpublished: list[UnpublishedJob]) -> None:
    first = unpublished[0]
    log.error(
        "check jobs not published",
        count=len(unpublished),
        regions=sorted({u.region for u in unpublished}),
        first_job_id=str(first.job.id),
        error=repr(first.error),
    )


def _runs_on_probes(check_type: str) -> bool:
    try:
        return get_check(check_type).scheduled
    except InvalidSettingError:
        return False  # a type this version does not know: nothing a probe could run


class Scheduler(Component):
    name = "pinger-scheduler"

    def __init__(
        self,
        db: PingerDatabase,
        bus: Bus,
        *,
        poll_seconds: float = 0.5,
        leader_retry_seconds: float = 2.0,
        reconcile_seconds: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.bus = bus
        self.poll_seconds = poll_seconds
        self.leader_retry_seconds = leader_retry_seconds
        self.reconcile_seconds = reconcile_seconds
        self.clock = clock
        self.heartbeats = HeartbeatWatcher(db)
        self.entries: dict[uuid.UUID, Entry] = {}
        # (due, sequence number, entry): the sequence number orders equal times (an entry is
        # never compared) and tells the live item from those a later push left stale.
        self.heap: list[tuple[float, int, Entry]] = []
        # The entries of each interval (cron monitors have none): a respread ranks entries, not
        # ids, so that it hashes no UUID in Python per member (that was most of its CPU).
        self.groups: dict[int, dict[uuid.UUID, Entry]] = {}
        self._dirty_groups: set[int] = set()
        # When each interval's group was last spread evenly (scheduler clock).
        self._spread_at: dict[int, float] = {}
        self._unqueued: set[uuid.UUID] = set()
        # A job's validity per interval (its deadline after its scheduled time), made once.
        self._windows: dict[int, timedelta] = {}
        self.is_leader = False
        self._seq = 0
        self._monitors_seen: datetime | None = None
        self._states_seen: datetime | None = None
        # Wall-clock time of the last read of the tables (`load_all` or a poll).
        self._read_at: datetime | None = None
        # Active monitors that get no jobs (heartbeats), with the reconciliation round that
        # last found each: a reconciliation takes them for known, not for missed ones to read
        # again every round. (The lateness watcher reads the heartbeats due on its own.)
        self.unscheduled: dict[uuid.UUID, int] = {}
        self._round = 0
        self._reconciling: _Reconciliation | None = None
        self._runs_on_probes: dict[str, bool] = {}
        self._next_poll = 0.0
        self._next_reconcile = 0.0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pinger-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.heartbeats.close()

    # --- leadership -------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                if self.db.dialect == "postgresql":
                    await self._lead_with_lock()
                else:
                    await self._lead(None)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler failed; retrying")
            self._step_down()
            await asyncio.sleep(self.leader_retry_seconds)

    async def _lead_with_lock(self) -> None:
        async with self.db.engine.connect() as conn:
            locked = await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": LEADER_LOCK})
            await conn.commit()  # the lock is session-scoped; no transaction stays open
            if not locked:
                return
            try:
                await self._lead(conn)
            finally:
                with contextlib.suppress(Exception):
                    await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LEADER_LOCK})
                    await conn.commit()

    def _step_down(self) -> None:
        if self.is_leader:
            log.info("scheduler stepped down")
        self.is_leader = False
        IS_LEADER.set(0)
        self.entries.clear()
        self.heap.clear()
        self.groups.clear()
        self._spread_at.clear()
        self._dirty_groups.clear()
        self._unqueued.clear()
        self.unscheduled.clear()
        self._reconciling = None
        SCHEDULED.set(0)

    async def _lead(self, lock_conn: AsyncConnection | None) -> None:
        self.is_leader = True
        IS_LEADER.set(1)
        log.info("scheduler is the leader")
        await self.load_all()
        self._next_poll = self.clock() + self.poll_seconds
        next_heartbeat = self.clock() + self.leader_retry_seconds
        self._next_reconcile = self.clock() + self.reconcile_seconds
        while True:
            await self.lead_once()
            now = self.clock()
            if lock_conn is not None and now >= next_heartbeat:
                # A dead lock connection means the lock is gone and another may lead.
                async with asyncio.timeout(5):
                    await lock_conn.execute(text("SELECT 1"))
                    await lock_conn.commit()
                next_heartbeat = now + self.leader_retry_seconds
            await asyncio.sleep(max(0.0, self.wake_at(self._next_poll) - self.clock()))

    async def lead_once(self) -> None:
        """One wake-up of the leader: publish what is due, poll for changes when a poll is
        due, and read the next page of a reconciliation once one is due (a page a wake-up:
        read at once, 30,000 monitors held the loop for 0.3 s, every run due meanwhile late)."""
        await self.publish_due()
        now = self.clock()
        if now >= self._next_poll:
            await self.poll_changes()
            # Every poll: with nothing due it is one indexed read without the write lock, and a
            # heartbeat monitor created since the last reconciliation is watched at once.
            await self.heartbeats.report_late()
            self._next_poll = now + self.poll_seconds
        reconciling = self._reconciling is not None or now >= self._next_reconcile
        if reconciling and await self._reconcile_page() is not None:
            self._next_reconcile = self.clock() + self.reconcile_seconds

    # --- the schedule -----------------------------------------------------------------------

    def wake_at(self, next_poll: float) -> float:
        """When the leader wakes next, having just published: for the next poll, or for the
        next due job but not before a tick has passed (the jobs due meanwhile go with it)."""
        if self._reconciling is not None:
            return min(next_poll, self.clock() + TICK_SECONDS)  # its next page
        if not self.heap:
            return next_poll
        return min(next_poll, max(self.heap[0][0], self.clock() + TICK_SECONDS))

    def _push(self, entry: Entry) -> None:
        """Queue the entry's next run: the grid point nearest one interval after its last run
        (so a slot that moved a little neither repeats nor skips a run), or the first one after
        now for a monitor new to this leader."""
        self._seq += 1
        seq = entry.queued = self._seq  # an item pushed before is stale from now on
        last_due = entry.last_due
        if entry.cron is not None and not entry.pending:
            # Exact times, as written: the next one after the last run (or after now).
            due = next_cron(
                entry.cron, entry.timezone, self.clock() if last_due is None else last_due
            )
        else:
            # While PENDING: the retry interval's grid at the monitor's hash; else its own slot.
            if entry.pending:
                interval, fraction = entry.retry_interval, entry.retry_slot
            else:
                interval, fraction = entry.interval, entry.slot
            after = self.clock() if last_due is None else last_due + interval / 2
            due = next_run(after, interval, fraction)
        heappush(self.heap, (due, seq, entry))

    def _respread(self) -> None:
        """Give the monitors of each changed interval their evenly spread slots again, at most
        once per `RESPREAD_SECONDS` per interval: a respread reschedules the whole group (one
        more member moves every slot), 0.3 to 0.6 s of CPU at 50,000 monitors, and an import
        changes the group at every poll. In between, a new monitor starts at the slot of its
        hash, near where the next respread puts it (hashes are uniform)."""
        now = self.clock()
        deferred: set[int] = set()
        for interval in self._dirty_groups:
            members = self.groups.get(interval)
            if not members:
                self.groups.pop(interval, None)
                self._spread_at.pop(interval, None)
                continue
            phase = offset_fraction(uuid.UUID(int=interval))  # intervals do not all start at :00
            if now < self._spread_at.get(interval, -math.inf) + RESPREAD_SECONDS:
                deferred.add(interval)
                for monitor_id in self._unqueued:
                    if (entry := members.get(monitor_id)) is not None:
                        entry.slot = (phase + entry.retry_slot) % 1.0
                        self._push(entry)
                continue
            self._spread_at[interval] = now
            # The order `spread` ranks them in: by hash, then id.
            ordered = sorted(members.values(), key=_SPREAD_ORDER)
            for entry, slot in zip(ordered, ranked_fractions(len(ordered), phase), strict=True):
                if entry.queued == 0:  # new to the schedule (`_unqueued`): never pushed yet
                    entry.slot = slot
                    self._push(entry)
                elif entry.slot != slot:
                    entry.slot = slot
                    # One that has not run yet keeps its queued first run: pushed again from
                    # now, its start moved by up to the time since it was queued.
                    if entry.last_due is not None:
                        self._push(entry)
        for monitor_id in self._unqueued:
            own_times = self.entries.get(monitor_id)
            if own_times is not None and own_times.cron is not None:
                self._push(own_times)  # cron monitors keep their own times: no group
        self._dirty_groups = deferred
        self._unqueued.clear()
        # Every entry is queued once now: the rest of the heap is stale items, left by pushes
        # again (a respread moves a whole group) and removals. Dropped once they are a fifth:
        # at twice the entries, a respread of 50,000 left 50,000 more items to sift through
        # and pop for up to an interval.
        if len(self.heap) > len(self.entries) + len(self.entries) // 4 + 64:
            self.heap = [item for item in self.heap if item[2].queued == item[1]]
            heapify(self.heap)

    async def publish_due(self) -> int:
        """Publish every job due by now; returns how many monitors were due."""
        now = self.clock()
        heap = self.heap
        windows = self._windows
        count = 0
        oldest: float | None = None
        jobs: list[tuple[Envelope, str]] = []
        while heap and heap[0][0] <= now:
            due, seq, entry = heappop(heap)
            if entry.queued != seq:
                continue  # removed or rescheduled since it was pushed
            if oldest is None:
                oldest = due
            scheduled_at = datetime.fromtimestamp(due, UTC)
            if entry.cron is not None and not entry.pending:
                # Stale once the next run is due, and never later than the interval allows.
                window = min(
                    float(entry.interval), next_cron(entry.cron, entry.timezone, due) - due
                )
                deadline = scheduled_at + timedelta(seconds=window)
            else:
                interval = entry.retry_interval if entry.pending else entry.interval
                span = windows.get(interval)
                if span is None:
                    span = windows[interval] = timedelta(seconds=interval)
                deadline = scheduled_at + span
            for template in entry.jobs:
                jobs.append((template.envelope(scheduled_at, deadline), template.region))
            # From `now`, not `due`: after a stall, missed runs are skipped, not fired in a burst.
            entry.last_due = due if due > now else now
            self._push(entry)
            count += 1
            if len(jobs) >= PUBLISH_BATCH:
                await self._publish(jobs)
                jobs = []
                heap = self.heap  # as read after the wait (only a respread puts in a new one)
        if jobs:
            await self._publish(jobs)
        if oldest is not None:
            # Once per tick: its most overdue job is the one popped first.
            LATENESS.observe(max(0.0, now - oldest))
        return count

    async def _publish(self, jobs: list[tuple[Envelope, str]]) -> None:
        """Hand the jobs to the bus together; retry once those it did not take, then count and
        log the rest (their check does not run this interval)."""
        unpublished = await self.bus.publish_jobs(jobs)
        if unpublished:
            # A refused or lost confirmation is usually a broker hiccup; the jobs keep their
            # deadline, so one retried late is still dropped by the broker once stale.
            unpublished = await self.bus.publish_jobs([(u.job, u.region) for u in unpublished])
        JOBS_PUBLISHED.inc(len(jobs) - len(unpublished))
        if unpublished:
            JOBS_UNPUBLISHED.inc(len(unpublished))
            _log_unpublished(unpublished)

    def _remove(self, monitor_id: uuid.UUID) -> None:
        self.unscheduled.pop(monitor_id, None)
        entry = self.entries.pop(monitor_id, None)
        if entry is None:
            return
        entry.queued = 0  # its heap item is stale
        if entry.cron is None:
            self.groups[entry.interval].pop(monitor_id, None)
            self._dirty_groups.add(entry.interval)

    def _check_runs_on_probes(self, check_type: str) -> bool:
        runs = self._runs_on_probes.get(check_type)
        if runs is None:
            runs = self._runs_on_probes[check_type] = _runs_on_probes(check_type)
        return runs

    def _upsert(self, row: Any, pending: bool | None) -> None:
        current = self.entries.get(row.id)
        if row.deleted_at is not None or row.paused:
            self._remove(row.id)
            return
        if not self._check_runs_on_probes(row.type):
            self._remove(row.id)
            self.unscheduled[row.id] = self._round
            return
        pending = current.pending if pending is None and current else bool(pending)
        if current is not None and (
            current.interval,
            current.retry_interval,
            current.cron,
            current.timezone,
        ) == (row.interval_seconds, row.retry_interval_seconds, row.cron, row.timezone):
            # Same grid: the queued run stays valid, and its heap item holds this entry.
            current.jobs = templates_of(row)
            current.updated_at = row.updated_at
            current.pending = pending
            current.stamp_read = None
            current.reconciled = self._round
            return
        entry = Entry(
            id=row.id,
            jobs=templates_of(row),
            interval=row.interval_seconds,
            retry_interval=row.retry_interval_seconds,
            updated_at=row.updated_at,
            retry_slot=current.retry_slot if current else offset_fraction(row.id),
            cron=row.cron,
            timezone=row.timezone,
            pending=pending,
            reconciled=self._round,
        )
        if current is not None:
            entry.last_due = current.last_due
            entry.slot = current.slot
            self._remove(row.id)
        self.entries[row.id] = entry
        if entry.cron is None:
            self.groups.setdefault(entry.interval, {})[row.id] = entry
            self._dirty_groups.add(entry.interval)
        self._unqueued.add(row.id)

    def _set_pending(self, monitor_id: uuid.UUID, pending: bool) -> None:
        entry = self.entries.get(monitor_id)
        if entry is None or entry.pending == pending:
            return
        entry.pending = pending
        if pending:
            # Onto the retry grid from now: a monitor that starts failing is re-checked soon.
            entry.last_due = None
        # Back on its interval's grid, a monitor keeps its last (retry) run: the next run is
        # the grid point nearest an interval after it. From now, it was often the grid point
        # just after the retry that decided UP or DOWN: the same check twice in a moment.
        self._push(entry)

    async def load_all(self) -> None:
        self.entries.clear()
        self.heap.clear()
        self.groups.clear()
        self._spread_at.clear()
        self.unscheduled.clear()
        self._reconciling = None
        self._read_at = utcnow()
        async with self.db.sessions() as session:
            self._monitors_seen = await session.scalar(select(func.max(monitors.c.updated_at)))
            self._states_seen = await session.scalar(select(func.max(monitor_states.c.changed_at)))
            rows = (
                await session.execute(
                    select(*SCHEDULE_COLUMNS, monitor_states.c.status)
                    .join(monitor_states, monitor_states.c.monitor_id == monitors.c.id)
                    .where(monitors.c.deleted_at.is_(None), monitors.c.paused.is_(False))
                )
            ).all()
        for row in rows:
            self._upsert(row, row.status == Status.PENDING.value)
        self._respread()
        SCHEDULED.set(len(self.entries))
        log.info("schedule loaded", monitors=len(self.entries))

    async def reconcile(self) -> int:
        """Compare every active monitor's `updated_at` with the schedule and apply what the
        incremental poll missed (new, changed, deleted or paused monitors), every page now;
        the count found. The leader reads one page per wake-up instead (`lead_once`)."""
        self._reconciling = None  # one under way starts again
        for _ in range(10_000_000 // RECONCILE_PAGE + 1):  # bounded: 10 million monitors
            found = await self._reconcile_page()
            if found is not None:
                return found
        raise RuntimeError("the reconciliation did not reach the table's end")

    async def _reconcile_page(self) -> int | None:
        """Read and compare the next page of the table's active monitors, in the order of
        their ids; at the last, remove what no page found and return the round's count (None
        before). A page is its own short transaction: between two, the leader publishes and
        polls, and an entry the poll (re)read meanwhile counts as found (its row is newer
        than the round)."""
        state = self._reconciling
        if state is None:
            self._round += 1
            dialect = self.db.engine.dialect
            to_stamp = monitors.c.updated_at.type.dialect_impl(dialect).result_processor(
                dialect, None
            )
            by_int = {entry.id.int: entry for entry in self.entries.values()}
            state = self._reconciling = _Reconciliation(self._round, to_stamp, by_int)
        # The stamps are read raw and made datetimes only when they differ from the one last
        # found equal: parsing every monitor's stamp (SQLite stores text) was a quarter of the
        # reconciliation's CPU (bench/README.md, performance round 7).
        query = (
            select(type_coerce(monitors.c.id, String), type_coerce(monitors.c.updated_at, String))
            .where(monitors.c.deleted_at.is_(None), monitors.c.paused.is_(False))
            .order_by(monitors.c.id)
            .limit(RECONCILE_PAGE)
        )
        if state.after is not None:
            query = query.where(monitors.c.id > state.after)
        rows: list[Any] = []
        async with self.db.engine.connect() as conn:
            page = (await conn.execute(query)).all()
            missed = self._compare(page, state)
            for start in range(0, len(missed), RECONCILE_CHUNK):
                chunk = missed[start : start + RECONCILE_CHUNK]
                rows.extend(
                    (
                        await conn.execute(
                            select(*SCHEDULE_COLUMNS, monitor_states.c.status)
                            .join(monitor_states, monitor_states.c.monitor_id == monitors.c.id)
                            .where(monitors.c.id.in_(chunk))
                        )
                    ).all()
                )
        for row in rows:
            self._upsert(row, row.status == Status.PENDING.value)
        state.missed += len(rows)
        if len(page) == RECONCILE_PAGE:
            state.after = _uuid_of(_int_of(page[-1][0]))
            if rows:
                self._respread()
                SCHEDULED.set(len(self.entries))
            return None
        self._reconciling = None
        gone = [i for i, entry in self.entries.items() if entry.reconciled != state.round]
        for monitor_id in gone:
            self._remove(monitor_id)
        for monitor_id in [i for i, seen in self.unscheduled.items() if seen != state.round]:
            del self.unscheduled[monitor_id]
        found = state.missed + len(gone)
        if found:
            RECONCILED.inc(found)
            log.info("schedule reconciled with the table", missed=state.missed, gone=len(gone))
            self._respread()
            SCHEDULED.set(len(self.entries))
        return found

    def _compare(self, page: Sequence[Any], state: _Reconciliation) -> list[uuid.UUID]:
        """Mark the page's monitors found in this round; the ids of those the schedule does
        not know or knows at another stamp."""
        entries = self.entries
        by_int = state.by_int
        unscheduled = self.unscheduled
        to_stamp = state.to_stamp
        round_ = state.round
        missed: list[uuid.UUID] = []
        for raw_id, stamp in page:
            key = raw_id.int if isinstance(raw_id, uuid.UUID) else int(raw_id, 16)
            entry = by_int.get(key)
            if entry is None or entry.queued == 0:  # 0: removed since the round began
                monitor_id = _uuid_of(key)
                entry = entries.get(monitor_id)
                if entry is None:
                    if monitor_id in unscheduled:
                        unscheduled[monitor_id] = round_
                    else:
                        missed.append(monitor_id)
                    continue
            entry.reconciled = round_
            if entry.stamp_read != stamp:
                if entry.updated_at == (stamp if to_stamp is None else to_stamp(stamp)):
                    entry.stamp_read = stamp
                else:
                    missed.append(entry.id)
        return missed

    def _poll_from(self, seen: datetime | None) -> datetime | None:
        """The stamp after which a poll reads: an overlap before the newest stamp seen or the
        previous read, whichever is later. A row committed since the previous read is stamped
        at most an overlap before it (reconciling finds later ones). From the newest stamp
        alone, a quiet table returned the same rows poll after poll: every monitor of a bulk
        import, and every state row, twice a second (a quarter of a core at 20,000)."""
        if seen is None:
            return None
        return max(seen, self._read_at or seen) - POLL_OVERLAP

    async def poll_changes(self) -> int:
        """Apply the monitors and states changed since the previous read; returns how many
        rows the poll read (stamps and states), what a quiet table should keep near zero."""
        read_at = utcnow()
        # The changed monitors' stamps and the changed states in one statement (a state row's
        # status is never NULL), on a connection, not an ORM session: the poll runs twice a
        # second, and each statement is a trip to SQLite's thread and SQLAlchemy's work
        # around it (a session cost a quarter more than the connection).
        query = select(
            monitors.c.id, monitors.c.updated_at, type_coerce(null(), String).label("status")
        )
        if (monitors_from := self._poll_from(self._monitors_seen)) is not None:
            query = query.where(monitors.c.updated_at > monitors_from)
        states_query = select(
            monitor_states.c.monitor_id, monitor_states.c.changed_at, monitor_states.c.status
        )
        if (states_from := self._poll_from(self._states_seen)) is not None:
            states_query = states_query.where(monitor_states.c.changed_at > states_from)
        async with self.db.engine.connect() as conn:
            read = (await conn.execute(union_all(query, states_query))).all()
            stamps = [row for row in read if row[2] is None]
            states = [row for row in read if row[2] is not None]
            # The overlap returns the rows of its last seconds again; only the new or changed
            # ones are read whole.
            unknown = [
                monitor_id
                for monitor_id, updated_at, _ in stamps
                if (known := self.entries.get(monitor_id)) is None or known.updated_at != updated_at
            ]
            changed: list[Any] = []
            for start in range(0, len(unknown), RECONCILE_CHUNK):
                chunk = unknown[start : start + RECONCILE_CHUNK]
                changed.extend(
                    (
                        await conn.execute(
                            select(*SCHEDULE_COLUMNS).where(monitors.c.id.in_(chunk))
                        )
                    ).all()
                )
        self._read_at = read_at
        for row in changed:
            self._upsert(row, None)
        for _, updated_at, _ in stamps:
            if self._monitors_seen is None or updated_at > self._monitors_seen:
                self._monitors_seen = updated_at
        for monitor_id, changed_at, status in states:
            self._set_pending(monitor_id, status == Status.PENDING.value)
            if self._states_seen is None or changed_at > self._states_seen:
                self._states_seen = changed_at
        self._respread()
        SCHEDULED.set(len(self.entries))
        return len(stamps) + len(states)
