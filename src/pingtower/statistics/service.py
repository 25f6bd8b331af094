"""Wires the Statistics service: database, ingest consumer, outbox relay, API, pruning."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import structlog
from fastapi import APIRouter

from pingtower.common import db, memory, pacing, sqlite_driver
from pingtower.common.events import CheckCompleted, Status, utcnow
from pingtower.common.http.app import ReadinessCheck
from pingtower.common.messaging.bus import Bus
from pingtower.common.messaging.inbox import Inbox
from pingtower.common.messaging.outbox import Outbox, OutboxRelay
from pingtower.common.runtime import Component
from pingtower.common.settings import Settings
from pingtower.statistics.api.reports import build_report_router
from pingtower.statistics.api.routes import build_router
from pingtower.statistics.api.slos import build_slo_router
from pingtower.statistics.api.status_page import build_status_page_router
from pingtower.statistics.domain.rollups import Resolution, floor_to
from pingtower.statistics.domain.uptime import StatusInterval, uptime
from pingtower.statistics.metrics import MONITORS, Exposition, MonitorSample
from pingtower.statistics.snapshot import LatencySnapshot
from pingtower.statistics.store import compaction, partitions, queries, tables
from pingtower.statistics.store import slos as slo_store
from pingtower.statistics.store.ingest import ROUTING_KEYS, ingest
from pingtower.statistics.store.watermark import folded_until

log = structlog.get_logger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
# Most of the time the metrics snapshot may take (its runs space out beyond `metrics_every`
# when they take longer): at 10,000 monitors a run is ~1 s of CPU.
METRICS_SHARE = 0.04
CONSUMER = "statistics.ingest"
ROLES = frozenset({"statistics"})


@dataclass(frozen=True)
class Retention:
    """How long each kind of data is kept (the issue's defaults)."""

    raw: timedelta = timedelta(days=30)
    minute: timedelta = timedelta(days=7)
    hour: timedelta = timedelta(days=90)
    day: timedelta = timedelta(days=5 * 365)

    @classmethod
    def from_settings(cls, settings: Settings) -> Retention:
        return cls(
            raw=timedelta(days=settings.statistics_raw_retention_days),
            minute=timedelta(days=settings.statistics_minute_retention_days),
            hour=timedelta(days=settings.statistics_hour_retention_days),
            day=timedelta(days=settings.statistics_day_retention_days),
        )

    def of(self, resolution: Resolution) -> timedelta:
        value: timedelta = getattr(self, resolution.value)
        return value


class StatisticsService(Component):
    name = "statistics"

    def __init__(
        self,
        settings: Settings,
        bus: Bus,
        *,
        clock: Callable[[], datetime] = utcnow,
        retention: Retention | None = None,
        prune_every: timedelta = timedelta(hours=1),
        prune_batch: int = 5000,
        evaluate_every: timedelta = timedelta(minutes=1),
        metrics_every: timedelta = timedelta(seconds=30),
        metrics_page: int = 250,
        ingest_batch: int = 500,
        # Every 5 minutes, not every minute: a fold rewrites each monitor's hour and day cell
        # whatever the minutes it adds, so a fold of 5 costs a fifth per minute in rewrites
        # (bench.statistics_compaction --minutes; bench/README.md, round 13); readers meet up
        # to 10 minutes of minute cells past the watermark instead of 6.
        compact_every: timedelta = timedelta(minutes=5),
        compact_grace: timedelta = timedelta(minutes=5),
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.clock = clock
        self.retention = retention or Retention.from_settings(settings)
        self.prune_every = prune_every
        self.prune_batch = prune_batch
        self.evaluate_every = evaluate_every
        self.metrics_every = metrics_every
        self.ingest_batch = ingest_batch
        self.compact_every = compact_every
        self.compact_grace = compact_grace
        self._tails_mended = False  # checked at the first fold (SQLite)
        self.url = settings.database_url("statistics")
        self.engine = db.create_engine(self.url)
        self.sessions = db.session_factory(self.engine)
        # for work that only reads: on SQLite, transactions that do not take the write lock
        self.read_engine = db.read_only_engine(self.url, self.engine)
        self.read_sessions = db.session_factory(self.read_engine)
        # ingest's: on SQLite a connection of its own, whose page cache lasts
        self.ingest_engine = db.consumer_engine(self.url, self.engine)
        self.outbox = Outbox(tables.outbox, producer="statistics")
        self.inbox = Inbox(tables.inbox, consumer=CONSUMER)
        self.relay = OutboxRelay(
            self.sessions,
            self.outbox,
            bus,
            poll_seconds=settings.outbox_poll_seconds,
            batch=settings.outbox_batch,
        )
        # A result is stored under its check id, so a redelivered one finds itself there (in
        # the results INSERT's RETURNING) and changes nothing without an inbox row: the results
        # window (30 days by default) outlasts the inbox's 7 days anyway.
        self.handler = self.inbox.handler(
            db.session_factory(self.ingest_engine), ingest, keyed_by_effect=(CheckCompleted.TYPE,)
        )
        self.metrics_page = metrics_page
        self.metrics_pause = metrics_every
        self._latency_max_age = max(2 * metrics_every, timedelta(minutes=1))
        self.latency = LatencySnapshot(max_age=self._latency_max_age)
        self._routers = (
            build_router(self.sessions, clock, self.latency),
            build_slo_router(self.sessions, clock),
            build_report_router(self.sessions, clock),
            build_status_page_router(self.sessions, clock),
        )
        self._tasks: list[asyncio.Task[None]] = []
        # One periodic job at a time: each is paced to a share of the event loop, so a fold
        # and a metrics snapshot that met took twice that share from the checks (the p99
        # lateness of 50,000 monitors every 30 s rose to 0.35-0.39 s where they met;
        # bench/README.md, performance round 16)
        self._one_job = asyncio.Lock()

    @property
    def routers(self) -> Sequence[APIRouter]:
        return self._routers

    @property
    def readiness(self) -> Mapping[str, ReadinessCheck]:
        async def database() -> None:
            await db.ping(self.engine)

        return {"statistics-database": database}

    async def prepare(self) -> None:
        await db.migrate(self.url, MIGRATIONS)
        await self.ensure_partitions()
        self.bus.subscribe(CONSUMER, ROUTING_KEYS, self.handler, max_batch=self.ingest_batch)

    async def start(self) -> None:
        self.relay.start()
        self._tasks = [
            asyncio.create_task(
                self._every(self.prune_every, self.prune), name="statistics-pruner"
            ),
            asyncio.create_task(
                self._every(self.compact_every, self.compact), name="statistics-compaction"
            ),
            asyncio.create_task(
                self._every(self.evaluate_every, self.evaluate_slos), name="statistics-slos"
            ),
            asyncio.create_task(
                self._every(lambda: self.metrics_pause, self.refresh_metrics),
                name="statistics-metrics",
            ),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.relay.stop()
        await self.engine.dispose()
        for own in (self.read_engine, self.ingest_engine):
            if own is not self.engine:
                await own.dispose()

    async def ensure_partitions(self) -> None:
        """On PostgreSQL, make sure the coming days have their results partitions."""
        if db.is_sqlite(self.url):
            return
        async with self.sessions() as session, session.begin():
            await partitions.ensure(session, self.clock().date())

    async def compact(self) -> int:
        """Fold minute cells into hour and day cells up to the last minute that ended at least
        `compact_grace` ago (results still arriving for it then go in as late ones), at most one
        hour per short transaction; returns how many steps moved the watermark. On SQLite a
        step reads and sums outside the write lock and holds it only to write the sums
        (`compaction.fold_next_hour_apart`)."""
        until = floor_to(self.clock() - self.compact_grace, Resolution.MINUTE.length)
        folded = 0
        sqlite = db.is_sqlite(self.url)
        if sqlite and not self._tails_mended:
            # PostgreSQL writes a day's tails in the fold's transaction; SQLite after it
            mended = await compaction.mend_day_tails(self.engine, self.read_engine)
            if mended is not None:
                log.info("statistics.day_tails_mended", day=mended.date().isoformat())
            self._tails_mended = True
        for _ in range(100_000):  # bounded: ~11 years of hours with data per run
            if sqlite:
                reached = await compaction.fold_next_hour_apart(
                    self.engine, self.read_engine, until
                )
            else:
                async with self.sessions() as session, session.begin():
                    reached = await compaction.fold_next_hour(session, until)
            if reached is None:
                break
            folded += 1
        if folded:
            # The fold's rows and its staging connection's pages, freed, would stay resident
            await asyncio.to_thread(memory.release_freed_memory)
        return folded

    async def prune(self) -> dict[str, int]:
        """Drop raw results and rollups past their retention. On PostgreSQL whole days of raw
        results go as partitions; the rest (SQLite, the default partition, the part of a day past
        the cutoff) goes in batches, each its own short transaction, so ingest is never blocked
        for long (SQLite has one writer). Returns how many rows (or partitions) went, per kind."""
        # Fold first: minute cells leave only once they are in their hour and day cells.
        await self.compact()
        now = self.clock()
        removed = {"raw": 0, "raw_partitions": 0}
        await self.ensure_partitions()
        if not db.is_sqlite(self.url):
            async with self.sessions() as session, session.begin():
                dropped = await partitions.drop_before(session, now - self.retention.raw)
            removed["raw_partitions"] = len(dropped)
        for _ in range(10_000):  # bounded: at most 10,000 batches per run
            async with self.sessions() as session, session.begin():
                count = await queries.prune_results(
                    session, now - self.retention.raw, self.prune_batch
                )
            removed["raw"] += count
            if count < self.prune_batch:
                break
        for resolution in Resolution:
            async with self.sessions() as session, session.begin():
                before = now - self.retention.of(resolution)
                if resolution is Resolution.MINUTE:
                    # day-step series read minute cells from the watermark's day on
                    folded = await folded_until(session)
                    before = min(before, floor_to(folded, Resolution.DAY.length))
                removed[resolution.value] = await queries.prune_rollups(session, resolution, before)
        async with self.sessions() as session, session.begin():
            await self.inbox.prune(session)
        return removed

    async def evaluate_slos(self) -> int:
        """Evaluate every SLO's burn-rate rules, one short transaction each; returns how many
        slo.burn_rate_exceeded events were written to the outbox."""
        now = self.clock()
        async with self.sessions() as session:
            ids = await slo_store.slo_ids(session)
        emitted = 0
        for slo_id in ids:
            async with self.sessions() as session, session.begin():
                emitted += await slo_store.evaluate(session, self.outbox, slo_id, now)
        return emitted

    async def refresh_metrics(self) -> int:
        """Recompute the per-monitor gauges and the latency snapshot from the database, a page
        of monitors at a time with a yield between pages (no page holds the event loop for
        long); returns the monitor count. The next run waits longer than `metrics_every` when
        this one took long, so that it takes at most `METRICS_SHARE` of the time whatever the
        monitor count."""
        started = time.monotonic()
        now = self.clock()
        day = now - timedelta(hours=24)
        samples: list[MonitorSample] = []
        exposition = Exposition()
        p95: dict[uuid.UUID, float | None] = {}
        after: uuid.UUID | None = None
        # the pages' reads on the loop's thread, between paced pauses (sqlite_driver says why)
        with sqlite_driver.reads_on_this_thread():
            for _ in range(10_000_000 // self.metrics_page + 1):  # bounded: 10 million monitors
                # read-only: on SQLite the page's reads take no write lock, so ingest never
                # queues behind them
                async with self.read_sessions() as session:
                    page = await queries.monitor_facts_page(session, after, self.metrics_page)
                    if not page:
                        break
                    first, after = page[0].monitor_id, page[-1].monitor_id
                    closed = await queries.closed_intervals(session, first, after, day, now)
                    histograms = await queries.recent_histograms(
                        session, [facts.monitor_id for facts in page], day, now
                    )
                these = [monitor_sample(f, closed.get(f.monitor_id, ()), day, now) for f in page]
                exposition.add(these)
                samples.extend(these)
                for facts in page:
                    found = histograms.get(facts.monitor_id)
                    p95[facts.monitor_id] = None if found is None else found.quantile(0.95)
                await pacing.pause()
        self.latency.update(now, p95)
        MONITORS.update(samples, exposition.render())
        del exposition  # its pages' parts: with the old snapshot gone, the run's peak is freed
        await asyncio.to_thread(memory.release_freed_memory)
        # Run paced (the periodic loop), its own time is what its slices took, not the whole
        # spread-out run's
        pace = pacing.current()
        took = time.monotonic() - started if pace is None else pace.worked
        self.metrics_pause = pause_after(self.metrics_every, timedelta(seconds=took), METRICS_SHARE)
        # a figure stays usable until the run after next
        self.latency.max_age = max(self._latency_max_age, 2 * self.metrics_pause)
        return len(samples)

    async def _every(
        self, period: timedelta | Callable[[], timedelta], work: Callable[[], Awaitable[object]]
    ) -> None:
        while True:
            try:
                # Beside the checks: at most a share of the event loop (common/pacing.py)
                async with self._one_job:
                    with pacing.paced():
                        outcome = await work()
                log.debug("statistics background work done", work=work.__name__, outcome=outcome)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("statistics background work failed; will retry", work=work.__name__)
            pause = period if isinstance(period, timedelta) else period()
            await asyncio.sleep(pause.total_seconds())


def monitor_sample(
    facts: queries.MonitorFacts,
    closed: Iterable[StatusInterval],
    window_start: datetime,
    window_end: datetime,
) -> MonitorSample:
    """A monitor's gauges: its current status (PAUSED when paused) and its uptime over the
    window from its closed intervals there and its open one."""
    timeline = list(closed)
    if facts.status is not None and facts.since is not None:
        timeline.append(StatusInterval(facts.since, None, facts.status))
    return MonitorSample(
        tenant=facts.tenant,
        monitor_id=str(facts.monitor_id),
        name=facts.name,
        status=Status.PAUSED if facts.paused else facts.status or Status.UNKNOWN,
        last_latency_ms=facts.last_latency_ms,
        uptime_24h=uptime(timeline, window_start, window_end).ratio,
    )


def pause_after(period: timedelta, took: timedelta, share: float) -> timedelta:
    """How long to wait after work that took `took`: `period`, or longer so that the work
    takes at most `share` of the time (a duty cycle: slow runs come less often)."""
    if not 0 < share <= 1:
        raise ValueError("share must be in (0, 1]")
    return max(period, took * ((1 - share) / share))


def build(settings: Settings, bus: Bus, roles: Collection[str]) -> list[Component]:
    unknown = set(roles) - ROLES
    if unknown:
        raise ValueError(f"unknown statistics roles: {sorted(unknown)}")
    if not roles:
        return []
    return [StatisticsService(settings, bus)]
