"""The in-process transport's check-job queues: jobs published together reach the handlers of
their region, and a closed bus hands every job back instead of losing it silently."""

from __future__ import annotations

import uuid
from datetime import timedelta

from pingtower.common.events import CheckJob, Envelope, utcnow
from pingtower.common.messaging.bus import Bus
from pingtower.common.messaging.inprocess import InProcessBus
from tests.integration.common.waiting import eventually


def job(region: str) -> Envelope:
    now = utcnow()
    check = CheckJob(
        monitor_id=uuid.uuid4(),
        check_type="http",
        target="http://127.0.0.1:9/",
        timeout_seconds=1.0,
        scheduled_at=now,
        deadline=now + timedelta(seconds=30),
        region=region,
    )
    return Envelope.wrap(check, producer="scheduler", tenant="acme")


async def test_jobs_published_together_reach_the_handlers_of_their_region() -> None:
    bus = InProcessBus()
    europe: list[Envelope] = []
    america: list[Envelope] = []

    async def run_eu(envelope: Envelope) -> None:
        europe.append(envelope)

    async def run_us(envelope: Envelope) -> None:
        america.append(envelope)

    bus.consume_jobs("eu", run_eu, concurrency=2)
    bus.consume_jobs("us", run_us, concurrency=2)
    await bus.start()
    try:
        jobs = [(job("eu"), "eu") for _ in range(5)] + [(job("us"), "us") for _ in range(3)]

        assert await bus.publish_jobs(jobs) == []

        await eventually(lambda: len(europe) == 5 and len(america) == 3)
        assert {e.id for e in europe} == {e.id for e, region in jobs if region == "eu"}
        assert {e.id for e in america} == {e.id for e, region in jobs if region == "us"}
    finally:
        await bus.close()


async def test_a_closed_bus_returns_every_job_it_did_not_take() -> None:
    bus = InProcessBus()
    await bus.start()
    await bus.close()
    jobs = [(job("eu"), "eu"), (job("us"), "us")]

    unpublished = await bus.publish_jobs(jobs)

    assert [(u.job.id, u.region) for u in unpublished] == [(e.id, r) for e, r in jobs]
    assert all(isinstance(u.error, ConnectionError) for u in unpublished)


async def test_the_default_publish_jobs_puts_them_one_by_one_for_a_bus_that_only_wraps() -> None:
    bus = InProcessBus()
    received: list[Envelope] = []

    async def run(envelope: Envelope) -> None:
        received.append(envelope)

    bus.consume_jobs("eu", run, concurrency=1)
    await bus.start()
    try:
        jobs = [(job("eu"), "eu") for _ in range(3)]

        assert await Bus.publish_jobs(bus, jobs) == []

        await eventually(lambda: len(received) == 3)
        assert [e.id for e in received] == [e.id for e, _ in jobs]
    finally:
        await bus.close()
