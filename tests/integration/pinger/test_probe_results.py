"""The probe's result publishing: results finished together go out in one hand-over, each caller
returns only once the bus holds its own result (on RabbitMQ: its confirm), and a result the bus
did not take fails its job (so the bus does not acknowledge it); on RabbitMQ the job is
acknowledged after that."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from pingtower.common.events import Envelope
from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.settings import Settings
from pingtower.pinger.probe.probe import Probe, ResultPublisher
from tests.integration.common.broker import Broker
from tests.integration.common.waiting import eventually
from tests.integration.pinger.harness import Collector
from tests.integration.pinger.servers import http_target
from tests.integration.pinger.test_probe import make_job


class RecordingBus(InProcessBus):
    """The in-process bus, remembering the size of each hand-over, which it confirms only once
    its consumers committed (as a broker that confirms late)."""

    def __init__(self) -> None:
        super().__init__(linger_seconds=0.0)
        self.calls: list[int] = []

    async def hand_over(self, envelopes: Sequence[Envelope]) -> None:
        self.calls.append(len(envelopes))
        await super().publish(envelopes)


def result(n: int) -> Envelope:
    return Envelope(type="check.completed", producer="test", tenant="acme", payload={"n": n})


async def test_results_finished_together_are_handed_over_in_one_call() -> None:
    bus = RecordingBus()
    committed: list[int] = []
    release = asyncio.Event()

    async def consumer(batch: Sequence[Envelope]) -> None:
        await release.wait()  # the "broker" has not confirmed yet
        committed.extend(envelope.payload["n"] for envelope in batch)

    bus.subscribe("evaluator", ["check.completed"], consumer)
    await bus.start()
    publisher = ResultPublisher(bus)
    try:
        callers = [asyncio.create_task(publisher.publish(result(n))) for n in range(20)]
        await eventually(lambda: bus.calls == [20], what="one hand-over of 20")
        await asyncio.sleep(0.05)
        assert not any(caller.done() for caller in callers)  # none returns before its confirm
        release.set()
        await asyncio.wait_for(asyncio.gather(*callers), 10)
    finally:
        await bus.close()
    assert sorted(committed) == list(range(20))


async def test_a_result_that_is_not_confirmed_fails_its_caller() -> None:
    bus = InProcessBus()
    await bus.start()
    await bus.close()  # publishing now fails
    publisher = ResultPublisher(bus)

    outcomes = await asyncio.gather(
        *(publisher.publish(result(n)) for n in range(3)), return_exceptions=True
    )

    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes)


@pytest.mark.rabbitmq
async def test_on_rabbitmq_each_job_is_acknowledged_once_its_result_is_confirmed(
    rabbitmq_url: str, namespace: str
) -> None:
    broker = Broker(rabbitmq_url, namespace)
    bus = broker.bus()
    collector = Collector(bus, ["check.completed"])
    probe = Probe(bus, Settings(allow_private_targets=True, probe_concurrency=8))
    await probe.prepare()
    try:
        async with http_target() as target:
            await bus.start()
            await probe.start()
            jobs = [make_job(f"{target.url}/ok") for _ in range(30)]
            assert await bus.publish_jobs([(job, "default") for job in jobs]) == []

            await eventually(lambda: len(collector.of_type("check.completed")) >= 30)
            await probe.stop()
            await bus.close()
        # Closing returns every unacknowledged job to the queue: none is there.
        assert await broker.ready_count(bus.job_queue_name("default")) == 0
    finally:
        await probe.stop()
        await bus.close()
        await broker.clean_up()
    done = collector.of_type("check.completed")
    assert sorted(e.payload["check_id"] for e in done) == sorted(j.payload["job_id"] for j in jobs)
