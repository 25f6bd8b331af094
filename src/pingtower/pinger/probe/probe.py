"""The probe role: consume the region's check jobs, run each check, publish `check.completed`.

Stateless and database-free: a job carries the whole check. A job past its deadline is dropped
and counted, never run late (its monitor's next job is already due). Checks against one host are
bounded by a per-host semaphore so many monitors on one server do not hammer it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import aiohttp
import structlog
from prometheus_client import Counter, Histogram

from pingtower.common.egress import guarded_session
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
CHECKS_RUN = Counter(
    "pingtower_pinger_checks_total", "Checks run by this probe", ["type", "outcome"]
)
CHECK_SECONDS = Histogram(
    "pingtower_pinger_check_seconds",
    "Duration of a check",
    ["type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


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
        self._slots: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        semaphore, users = self._slots.get(host, (asyncio.Semaphore(self.limit), 0))
        self._slots[host] = (semaphore, users + 1)
        try:
            async with semaphore:
                yield
        finally:
            semaphore, users = self._slots[host]
            if users == 1:
                del self._slots[host]
            else:
                self._slots[host] = (semaphore, users - 1)

    def active_hosts(self) -> int:
        return len(self._slots)


class Probe(Component):
    name = "pinger-probe"

    def __init__(self, bus: Bus, settings: Settings) -> None:
        self.bus = bus
        self.settings = settings
        self.limiter = HostLimiter(settings.probe_per_target_concurrency)
        self._context: CheckContext | None = None

    async def prepare(self) -> None:
        self.bus.consume_jobs(
            self.settings.region, self.handle, concurrency=self.settings.probe_concurrency
        )

    async def start(self) -> None:
        self.context()

    async def stop(self) -> None:
        if self._context is not None:
            await self._context.http.close()
            self._context = None
        close_shared_echo_sockets()

    def context(self) -> CheckContext:
        if self._context is None:
            # One session and one TLS context for every check (a fresh connection each time:
            # force_close); creating them per check would cost more CPU than the check itself.
            http = guarded_session(
                allow_private=self.settings.allow_private_targets,
                allow_networks=self.settings.egress_allow_networks,
                limit=self.settings.probe_concurrency,
                # No session-wide timer: each check bounds itself (asyncio.timeout with the
                # job's timeout), and a second timer per request was measurable CPU.
                timeout=aiohttp.ClientTimeout(total=None),
            )
            self._context = CheckContext(
                http,
                self.settings.allow_private_targets,
                allow_networks=self.settings.egress_allow_networks,
            )
        return self._context

    async def handle(self, envelope: Envelope) -> None:
        job = CheckJob.model_validate(envelope.payload)
        async with self.limiter.slot(target_host(job.check_type, job.target)):
            # Checked after waiting for the host's slot: the wait itself may outlast the job.
            if utcnow() >= job.deadline:
                JOBS_EXPIRED.inc()
                log.info("expired check job dropped", monitor_id=str(job.monitor_id))
                return
            completed = await self.run(job)
        await self.bus.publish(
            [Envelope.wrap(completed, producer=PRODUCER, tenant=envelope.tenant)]
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
        CHECK_SECONDS.labels(job.check_type).observe(time.perf_counter() - started)
        CHECKS_RUN.labels(job.check_type, result.outcome.value).inc()
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
