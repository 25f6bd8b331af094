"""Two probe processes (two buses, one RabbitMQ job queue) share a region's checks: every job
runs exactly once, and both probes take part."""

from __future__ import annotations

import asyncio
from collections import Counter as Tally

from aiohttp import web

from pingtower.common.events import CheckCompleted, CheckJob
from pingtower.common.messaging.rabbitmq import RabbitMQBus
from pingtower.common.settings import Settings
from pingtower.pinger.probe.probe import Probe
from tests.integration.pinger.harness import Collector, eventually
from tests.integration.pinger.test_probe import make_job


class CountingProbe(Probe):
    runs = 0

    async def run(self, job: CheckJob) -> CheckCompleted:
        self.runs += 1
        return await super().run(job)


async def test_two_probes_share_the_jobs_of_a_region(rabbitmq_url: str, namespace: str) -> None:
    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(0.05)  # long enough that one probe cannot take every job
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    target = f"http://127.0.0.1:{runner.addresses[0][1]}/"

    settings = Settings(allow_private_targets=True, probe_concurrency=2)
    buses = [RabbitMQBus(rabbitmq_url, namespace=namespace) for _ in range(3)]
    probe_buses, observer = buses[:2], buses[2]
    probes = [CountingProbe(bus, settings) for bus in probe_buses]
    collector = Collector(observer, ["check.completed"], name="test.results")
    try:
        for probe in probes:
            await probe.prepare()
        for bus in buses:
            await bus.start()
        for probe in probes:
            await probe.start()
        jobs = [make_job(target) for _ in range(20)]
        for job in jobs:
            await observer.publish_job(job, "default")
        await eventually(lambda: len(collector.of_type("check.completed")) >= 20, timeout=20)
        await asyncio.sleep(0.3)  # a duplicate would arrive now
    finally:
        for probe in probes:
            await probe.stop()
        for bus in buses:
            await bus.close()
        await runner.cleanup()
    results = collector.of_type("check.completed")
    runs = Tally(r.payload["check_id"] for r in results)
    assert set(runs) == {job.payload["job_id"] for job in jobs}
    assert max(runs.values()) == 1
    assert all(r.payload["outcome"] == "up" for r in results)
    # Each probe takes at most its prefetch (2) at a time, so both had to work.
    assert [probe.runs > 0 for probe in probes] == [True, True]
    assert sum(probe.runs for probe in probes) == 20
