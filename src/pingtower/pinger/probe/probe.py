"""The probe role: consume the region's check jobs, run each check, publish `check.completed`.

Stateless and database-free: a job carries the whole check. A job past its deadline is dropped
and counted, never run late (its monitor's next job is already due). Checks against one host are
bounded by a per-host gate so many monitors on one server do not hammer it.

A job's handling ends once the bus holds its result (`Bus.hand_over`). On RabbitMQ that is the
broker's confirm, and a job's message is acknowledged when its first job starts, so a probe
killed mid-check loses that interval's checks of the jobs it held, and none runs twice. Waiting
for the confirmation takes longer than most checks, so the probe holds more jobs than it runs
checks at once (`JOBS_IN_HAND`), and the results finished in the same event-loop iteration are
published together, their confirmations awaited as one. The in-process bus holds a result once
it is queued for its consumers, so there a job ends with its check.
"""

from __future__ import annotations

import asyncio
import functools
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Iterator
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import structlog
from prometheus_client import REGISTRY, Counter
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from pingtower.common.events import (
    CheckCompleted,
    CheckJob,
    Envelope,
    Outcome,
    trusted,
    utcnow,
)
from pingtower.common.messaging.bus import Bus
from pingtower.common.messaging.inprocess import InProcessBus
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


class Gate:
    """At most `limit` holders at once; the others wait in arrival order. Unlike
    `asyncio.Semaphore`, a free gate is entered without a coroutine (`try_enter`): the probe's
    two semaphores under `async with` (four coroutines per job) were 4 µs of a check's CPU."""

    __slots__ = ("free", "waiters")

    def __init__(self, limit: int) -> None:
        self.free = limit
        self.waiters: deque[asyncio.Future[None]] = deque()

    def try_enter(self) -> bool:
        if self.free > 0 and not self.waiters:
            self.free -= 1
            return True
        return False

    async def enter(self) -> None:
        if self.try_enter():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.leave()  # handed a place just as we were cancelled: pass it on
            raise

    def leave(self) -> None:
        # The place goes straight to the first waiter still waiting (a cancelled one is done).
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.free += 1


class HostLimiter:
    """At most `limit` concurrent checks per host; idle hosts are forgotten."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._hosts: dict[str, _Host] = {}
        # The gate of the last host forgotten, as good as new (no holder, no waiter): the next
        # new host takes it. A host whose only check runs is joined and forgotten per check.
        self._spare: _Host | None = None

    def join(self, host: str) -> _Host:
        """The host's gate, held for this caller until `part`; entered to run a check."""
        joined = self._hosts.get(host)
        if joined is None:
            joined = self._spare or _Host(self.limit)
            self._spare = None
            self._hosts[host] = joined
        joined.users += 1
        return joined

    def part(self, host: str, joined: _Host) -> None:
        joined.users -= 1
        if joined.users == 0 and self._hosts.get(host) is joined:
            del self._hosts[host]
            if joined.free == self.limit and not joined.waiters:  # idle, as it should be
                self._spare = joined

    def active_hosts(self) -> int:
        return len(self._hosts)


class _Host(Gate):
    """A host's gate, and how many callers hold it between `join` and `part` (waiting or
    running): one object per host, made and dropped as often as a host's only check runs."""

    __slots__ = ("users",)

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.users = 0


class ResultPublisher:
    """Publishes `check.completed` events in batches: the results handed over during one
    event-loop iteration go out in one `Bus.hand_over`, whose confirmations are awaited
    together; each caller returns once the bus holds its own event (or raises if it did not)."""

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
            await self.bus.hand_over([envelope for envelope, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            # One refused event must not fail its neighbours (their jobs would run again):
            # each on its own; a copy of one the broker already took is dropped by its consumers
            # (the evaluator finds it stored).
            results = await asyncio.gather(
                *(self.bus.hand_over([envelope]) for envelope, _ in batch), return_exceptions=True
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
        self._checks = Gate(settings.probe_concurrency)
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
                shared_settings=isinstance(self.bus, InProcessBus),
            )
        return self._context

    async def handle(self, envelope: Envelope) -> None:
        # In-process (embedded) jobs carry the scheduler's model: no validation again.
        job = envelope.parse_as(CheckJob)
        fields = job.__dict__  # as in `completed_event`
        check_type = fields["check_type"]
        host = target_host(check_type, fields["target"])
        checks = self._checks
        if not checks.try_enter():
            await checks.enter()
        try:
            joined = self.limiter.join(host)
            try:
                if not joined.try_enter():
                    await joined.enter()
                try:
                    # Checked after waiting for the gates: the wait itself may outlast the job.
                    if utcnow() >= fields["deadline"]:
                        # Counted, not logged one by one: a probe that falls behind drops
                        # thousands.
                        JOBS_EXPIRED.inc()
                        return
                    completed = await self.run(job)
                finally:
                    joined.leave()
            finally:
                self.limiter.part(host, joined)
        finally:
            checks.leave()
        # Returns once the bus holds the result; only then does it count the job handled.
        await self.results.publish(
            Envelope.wrap(
                completed,
                producer=PRODUCER,
                tenant=envelope.tenant,
                occurred_at=completed.finished_at,  # it happened when the check was over
            )
        )

    async def run(self, job: CheckJob) -> CheckCompleted:
        started_at = utcnow()
        started = time.perf_counter()
        check_type = job.check_type
        try:
            result = await get_check(check_type).run(job, self._context or self.context())
        except InvalidSettingError as exc:
            result = CheckResult.failed("config", str(exc))
        except Exception as exc:  # a bug in a check must not kill the probe
            log.exception("check crashed", monitor_id=str(job.monitor_id))
            result = CheckResult.failed("internal", f"{type(exc).__name__}: {exc}")
        seconds = time.perf_counter() - started
        # str(), not .value: the same text, without the enum's Python-level property (0.2 µs).
        CHECK_TALLIES.record(check_type, str(result.outcome), seconds)
        # One clock read per check: the end is the start plus the time the check took (the
        # arguments by position: the keyword took a fifth of the timedelta's cost).
        return completed_event(job, result, started_at, started_at + timedelta(0, seconds))


def completed_event(
    job: CheckJob, result: CheckResult, started_at: datetime, finished_at: datetime
) -> CheckCompleted:
    """The `check.completed` of a job's result, as `CheckCompleted(...)` would validate it
    (tests hold the two equal), built without validating: every value is the probe's own."""
    up = result.outcome == _UP
    latency_ms = result.latency_ms
    # The job's fields read from its dict (where pydantic keeps them): an attribute of a model
    # goes through its class's __getattr__ hook, 0.1 µs each.
    fields = job.__dict__
    return trusted(
        CheckCompleted,
        {
            "check_id": fields["job_id"],
            "monitor_id": fields["monitor_id"],
            "region": fields["region"],
            "scheduled_at": fields["scheduled_at"],
            "started_at": started_at,
            "finished_at": finished_at,
            "outcome": result.outcome,
            "latency_ms": None if latency_ms is None else float(latency_ms),
            "error_kind": None if up else result.error_kind,
            "error_message": None if up else result.error_message,
            "status_code": result.status_code,
            "size_bytes": result.size_bytes,
            "phases_ms": _floats(result.phases_ms),
            "cert_expires_at": result.cert_expires_at,
        },
    )


# A member read from its enum class goes through a Python-level descriptor (0.1 µs).
_UP = Outcome.UP


def _floats(values: dict[str, float]) -> dict[str, float]:
    """`values` with every value a float, as validation would make them (a check may give an
    int where a float is typed); the same dict when they all are."""
    for value in values.values():
        if type(value) is not float:
            return {name: float(value) for name, value in values.items()}
    return values
