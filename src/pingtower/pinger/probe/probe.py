"""The probe role: consume the region's check jobs, run each check, publish `check.completed`.

Stateless and database-free: a job carries the whole check. A job past its deadline is dropped
and counted, never run late (its monitor's next job is already due). Checks against one host are
bounded by a per-host semaphore so many monitors on one server do not hammer it.

A job is acknowledged only once its result is confirmed by the bus, so a probe killed mid-check
loses nothing but that check. Waiting for the confirmation takes longer than most checks, so the
probe holds more jobs than it runs checks at once (`JOBS_IN_HAND`), and the results finished in
the same event-loop iteration are published together, their confirmations awaited as one.
"""

from __future__ import annotations

import asyncio
import functools
import time
from bisect import bisect_left
from collections.abc import Iterator
from urllib.parse import urlsplit

import structlog
from prometheus_client import REGISTRY, Counter
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from pingtower.common.events import CheckCompleted, CheckJob, Envelope, Outcome, utcnow
from pingtower.common.messaging.bus import Bus
from pingtower.common.runtime import Component
from pingtower.common.settings import Settings
from pingtower.pinger.checks.base import CheckContext, CheckResult, get_check
from pingtower.pinger.checks.icmp_socket import close_shared_echo_sockets
from pingtower.pinger.domain.monitor import InvalidSettingError

log = structlog.get_logger(__name__)

PRODUCER = "pinger.probe"
JOBS_EXPIRED = Counter(
    "pingtower_pinger_jobs_expired_total", "Check jobs dropped because their deadline had passed"
)
CHECK_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# The "le" labels, written as prometheus_client writes its own histograms' ("1.0", "+Inf").
_BUCKET_NAMES = [repr(float(bound)) for bound in CHECK_SECONDS_BUCKETS] + ["+Inf"]


class _TypeTally:
    __slots__ = ("buckets", "outcomes", "seconds")

    def __init__(self) -> None:
        self.buckets = [0] * (len(CHECK_SECONDS_BUCKETS) + 1)  # the last one: above them all
        self.seconds = 0.0
        self.outcomes: dict[str, int] = {}


class CheckTallies(Collector):
    """`pingtower_pinger_checks_total` (by type and outcome) and the histogram
    `pingtower_pinger_check_seconds` (by type), counted in plain lists and dicts and turned
    into metrics only when scraped: prometheus_client's Counter.inc and Histogram.observe (a
    lock and a value object each) cost more per check than counting does."""

    def __init__(self) -> None:
        self._types: dict[str, _TypeTally] = {}

    def record(self, check_type: str, outcome: str, seconds: float) -> None:
        tally = self._types.get(check_type)
        if tally is None:
            tally = self._types[check_type] = _TypeTally()
        tally.buckets[bisect_left(CHECK_SECONDS_BUCKETS, seconds)] += 1  # "le": <= its bound
        tally.seconds += seconds
        tally.outcomes[outcome] = tally.outcomes.get(outcome, 0) + 1

    def collect(self) -> Iterator[Metric]:
        # Scraped from another thread: list() copies a dict under the GIL in one step.
        types = list(self._types.items())
        runs = CounterMetricFamily(
            "pingtower_pinger_checks", "Checks run by this probe", labels=["type", "outcome"]
        )
        durations = HistogramMetricFamily(
            "pingtower_pinger_check_seconds", "Duration of a check", labels=["type"]
        )
        for check_type, tally in types:
            for outcome, count in list(tally.outcomes.items()):
                runs.add_metric([check_type, outcome], count)
            cumulative, buckets = 0, []
            for bound, count in zip(_BUCKET_NAMES, list(tally.buckets), strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            durations.add_metric([check_type], buckets, tally.seconds)
        yield runs
        yield durations


CHECK_TALLIES = CheckTallies()
REGISTRY.register(CHECK_TALLIES)


# Jobs a probe holds per check it may run at once: the others wait for their result's
# confirmation (a broker round trip with a disk write), which is longer than a typical check.
JOBS_IN_HAND = 4
# Results published in one call at most; a larger burst is split into several calls.
RESULT_BATCH = 500


@functools.lru_cache(maxsize=16_384)  # the same targets over and over; urlsplit took 2 µs
def target_host(check_type: str, target: str) -> str:
    """The host a check talks to, the key of the politeness limit."""
    if "://" in target:
        return (urlsplit(target).hostname or target).lower()
    host, _, _port = target.rpartition(":")
    return (host or target).strip("[]").lower()


class HostLimiter:
    """At most `limit` concurrent checks per host; idle hosts are forgotten."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots: dict[str, _HostSlots] = {}

    def slot(self, host: str) -> _HostSlot:
        return _HostSlot(self, host)

    def active_hosts(self) -> int:
        return len(self._slots)


class _HostSlots:
    __slots__ = ("semaphore", "users")

    def __init__(self, limit: int) -> None:
        self.semaphore = asyncio.Semaphore(limit)
        self.users = 0


class _HostSlot:
    """One check's slot on its host (a class, not @asynccontextmanager: the generator-based
    manager was a visible share of the probe's CPU per check)."""

    __slots__ = ("_host", "_limiter", "_slots")

    def __init__(self, limiter: HostLimiter, host: str) -> None:
        self._limiter = limiter
        self._host = host

    async def __aenter__(self) -> None:
        shared = self._limiter._slots
        slots = shared.get(self._host)
        if slots is None:
            slots = shared[self._host] = _HostSlots(self._limiter.limit)
        self._slots = slots
        slots.users += 1
        try:
            await slots.semaphore.acquire()
        except BaseException:
            self._leave()
            raise

    async def __aexit__(self, *_exc: object) -> None:
        self._slots.semaphore.release()
        self._leave()

    def _leave(self) -> None:
        self._slots.users -= 1
        if self._slots.users == 0 and self._limiter._slots.get(self._host) is self._slots:
            del self._limiter._slots[self._host]


class ResultPublisher:
    """Publishes `check.completed` events in batches: the results handed over during one
    event-loop iteration go out in one `publish`, whose confirmations are awaited together;
    each caller returns once its own event is confirmed (or raises if it was not)."""

    def __init__(self, bus: Bus, *, max_batch: int = RESULT_BATCH) -> None:
        self.bus = bus
        self.max_batch = max_batch
        self._waiting: list[tuple[Envelope, asyncio.Future[None]]] = []
        self._publishing: set[asyncio.Task[None]] = set()

    async def publish(self, envelope: Envelope) -> None:
        loop = asyncio.get_running_loop()
        confirmed: asyncio.Future[None] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._flush)
        self._waiting.append((envelope, confirmed))
        await confirmed

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        for start in range(0, len(waiting), self.max_batch):
            task = asyncio.create_task(self._publish(waiting[start : start + self.max_batch]))
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)

    async def _publish(self, batch: list[tuple[Envelope, asyncio.Future[None]]]) -> None:
        try:
            await self.bus.publish([envelope for envelope, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            # One refused event must not fail its neighbours (their jobs would run again):
            # each on its own; a copy of one the broker already took is dropped by the inbox.
            results = await asyncio.gather(
                *(self.bus.publish([envelope]) for envelope, _ in batch), return_exceptions=True
            )
            for (_, confirmed), result in zip(batch, results, strict=True):
                _settle(confirmed, result if isinstance(result, BaseException) else None)
            return
        for _, confirmed in batch:
            _settle(confirmed, None)


def _settle(confirmed: asyncio.Future[None], error: BaseException | None) -> None:
    if confirmed.done():
        return  # its caller was cancelled (the bus is closing)
    if error is None:
        confirmed.set_result(None)
    elif isinstance(error, Exception):
        confirmed.set_exception(error)
    else:
        confirmed.cancel()


class Probe(Component):
    name = "pinger-probe"

    def __init__(self, bus: Bus, settings: Settings) -> None:
        self.bus = bus
        self.settings = settings
        self.limiter = HostLimiter(settings.probe_per_target_concurrency)
        self.results = ResultPublisher(bus)
        self._checks = asyncio.Semaphore(settings.probe_concurrency)
        self._context: CheckContext | None = None

    async def prepare(self) -> None:
        self.bus.consume_jobs(
            self.settings.region,
            self.handle,
            concurrency=self.settings.probe_concurrency * JOBS_IN_HAND,
        )

    async def start(self) -> None:
        self.context()

    async def stop(self) -> None:
        self._context = None
        close_shared_echo_sockets()

    def context(self) -> CheckContext:
        if self._context is None:
            # One TLS context for every check: building one per check would cost more CPU
            # than the check itself.
            self._context = CheckContext(
                self.settings.allow_private_targets,
                allow_networks=self.settings.egress_allow_networks,
            )
        return self._context

    async def handle(self, envelope: Envelope) -> None:
        # In-process (embedded) jobs carry the scheduler's model: no validation again.
        job = envelope.parse_as(CheckJob)
        async with self._checks, self.limiter.slot(target_host(job.check_type, job.target)):
            # Checked after waiting for the slots: the wait itself may outlast the job.
            if utcnow() >= job.deadline:
                # Counted, not logged one by one: a probe that falls behind drops thousands.
                JOBS_EXPIRED.inc()
                return
            completed = await self.run(job)
        # Returns once the result is confirmed; only then does the bus acknowledge the job.
        await self.results.publish(
            Envelope.wrap(completed, producer=PRODUCER, tenant=envelope.tenant)
        )

    async def run(self, job: CheckJob) -> CheckCompleted:
        started_at = utcnow()
        started = time.perf_counter()
        try:
            result = await get_check(job.check_type).run(job, self.context())
        except InvalidSettingError as exc:
            result = CheckResult.failed("config", str(exc))
        except Exception as exc:  # a bug in a check must not kill the probe
            log.exception("check crashed", monitor_id=str(job.monitor_id))
            result = CheckResult.failed("internal", f"{type(exc).__name__}: {exc}")
        CHECK_TALLIES.record(job.check_type, result.outcome.value, time.perf_counter() - started)
        return CheckCompleted(
            check_id=job.job_id,
            monitor_id=job.monitor_id,
            region=job.region,
            scheduled_at=job.scheduled_at,
            started_at=started_at,
            finished_at=utcnow(),
            outcome=result.outcome,
            latency_ms=result.latency_ms,
            error_kind=result.error_kind if result.outcome != Outcome.UP else None,
            error_message=result.error_message if result.outcome != Outcome.UP else None,
            status_code=result.status_code,
            size_bytes=result.size_bytes,
            phases_ms=result.phases_ms,
            cert_expires_at=result.cert_expires_at,
        )
