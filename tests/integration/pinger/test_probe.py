"""The probe: runs jobs, publishes results, drops expired jobs, is polite to each host."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from pingtower.common.events import CheckCompleted, CheckJob, Envelope, utcnow
from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.settings import Settings
from pingtower.pinger.probe.probe import JOBS_EXPIRED, Probe, target_host
from pingtower.pinger.scheduler.jobs import job_envelope
from tests.integration.pinger.harness import Collector, eventually
from tests.integration.pinger.servers import HttpTarget, http_target


def make_job(target: str, *, scheduled_ago: float = 0.0, interval: float = 60.0) -> Envelope:
    return job_envelope(
        monitor_id=uuid.uuid4(),
        tenant="acme",
        check_type="http",
        target=target,
        settings={},
        timeout_seconds=5.0,
        region="default",
        scheduled_at=utcnow() - timedelta(seconds=scheduled_ago),
        interval_seconds=interval,
    )


@pytest.fixture
async def target() -> AsyncIterator[HttpTarget]:
    async with http_target() as server:
        yield server


async def started_probe(settings: Settings) -> tuple[Probe, InProcessBus, Collector]:
    bus = InProcessBus()
    collector = Collector(bus, ["check.completed"])
    probe = Probe(bus, settings)
    await probe.prepare()
    await bus.start()
    await probe.start()
    return probe, bus, collector


async def test_probe_runs_a_job_and_publishes_check_completed(target: HttpTarget) -> None:
    probe, bus, collector = await started_probe(Settings(allow_private_targets=True))
    try:
        job = make_job(f"{target.url}/ok")
        await bus.publish_job(job, "default")
        (done,) = await eventually(lambda: collector.of_type("check.completed"))
    finally:
        await probe.stop()
        await bus.close()
    assert done.tenant == "acme"
    assert done.producer == "pinger.probe"
    assert done.payload["check_id"] == job.payload["job_id"]
    assert done.payload["monitor_id"] == job.payload["monitor_id"]
    assert done.payload["outcome"] == "up"
    assert done.payload["status_code"] == 200
    # The end is the start plus the time the probe measured, which holds the check's latency;
    # the event happened when the check was over.
    completed = done.parse_as(CheckCompleted)
    assert completed.latency_ms is not None
    took = completed.finished_at - completed.started_at
    assert took >= timedelta(milliseconds=completed.latency_ms) - timedelta(microseconds=1)
    assert done.occurred_at == completed.finished_at


async def test_a_job_past_its_deadline_is_dropped_and_counted(target: HttpTarget) -> None:
    probe, bus, collector = await started_probe(Settings(allow_private_targets=True))
    before = JOBS_EXPIRED._value.get()
    try:
        await probe.handle(make_job(f"{target.url}/ok", scheduled_ago=61, interval=60))
        await probe.handle(make_job(f"{target.url}/ok"))
        await eventually(lambda: collector.of_type("check.completed"))
        await asyncio.sleep(0.05)
    finally:
        await probe.stop()
        await bus.close()
    assert JOBS_EXPIRED._value.get() == before + 1
    assert len(collector.of_type("check.completed")) == 1


async def test_checks_against_one_host_are_bounded() -> None:
    running = 0
    peak = 0

    async def slow(_request: web.Request) -> web.Response:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.1)
        running -= 1
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    settings = Settings(
        allow_private_targets=True, probe_concurrency=20, probe_per_target_concurrency=2
    )
    probe = Probe(InProcessBus(), settings)
    try:
        envelopes = [make_job(f"http://127.0.0.1:{port}/") for _ in range(8)]
        await asyncio.gather(*(probe.handle(envelope) for envelope in envelopes))
    finally:
        await probe.stop()
        await runner.cleanup()
    assert peak == 2
    assert probe.limiter.active_hosts() == 0


def test_target_host_is_the_politeness_key() -> None:
    assert target_host("http", "https://Example.com:8443/path") == "example.com"
    assert target_host("tcp", "db.example.com:5432") == "db.example.com"
    assert target_host("tcp", "[::1]:22") == "::1"


async def test_each_check_is_counted_by_type_and_outcome_and_timed(target: HttpTarget) -> None:
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    probe = Probe(InProcessBus(), Settings(allow_private_targets=True))
    up = {"type": "http", "outcome": "up"}
    down = {"type": "http", "outcome": "down"}
    before = (
        sample("pingtower_pinger_checks_total", **up),
        sample("pingtower_pinger_checks_total", **down),
        sample("pingtower_pinger_check_seconds_count", type="http"),
        sample("pingtower_pinger_check_seconds_bucket", type="http", le="+Inf"),
    )
    await probe.start()
    try:
        for path in ("/ok", "/ok", "/status/500"):
            await probe.run(make_job(f"{target.url}{path}").parse_as(CheckJob))
    finally:
        await probe.stop()
    after = (
        sample("pingtower_pinger_checks_total", **up),
        sample("pingtower_pinger_checks_total", **down),
        sample("pingtower_pinger_check_seconds_count", type="http"),
        sample("pingtower_pinger_check_seconds_bucket", type="http", le="+Inf"),
    )
    assert [b - a for a, b in zip(before, after, strict=True)] == [2, 1, 3, 3]
    assert sample("pingtower_pinger_check_seconds_sum", type="http") > 0
