"""Check jobs published together travel packed (common/messaging/packing.py), against a real
broker: what goes on the wire, that the probes of a region still share the packs and never hold
far more jobs than they run, that a pack is acknowledged when its first job starts (so a consumer
killed mid-pack makes no job run twice), that a stale job of a valid pack reaches the probe and
is dropped and counted there, and that a single-job message is still consumed.

Run as a module, this file is the job consumer that the kill test SIGKILLs:
`python -m tests.integration.common.test_rabbitmq_job_packs <broker-url> <namespace>`.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import cast

import aio_pika
import pytest

from pingtower.common.events import Envelope, utcnow
from pingtower.common.messaging.packing import COUNT_HEADER, PACKED_CONTENT_TYPE, deadline_of
from pingtower.common.messaging.rabbitmq import RabbitMQBus
from pingtower.common.settings import Settings
from pingtower.pinger.probe.probe import JOBS_EXPIRED, Probe
from tests.integration.common.broker import Broker
from tests.integration.common.test_rabbitmq_bus import Received, events_of, job
from tests.integration.common.waiting import eventually

pytestmark = pytest.mark.rabbitmq

REPO_ROOT = Path(__file__).resolve().parents[3]


class Held:
    """A job handler that keeps every job it is given until released, counting how many it
    holds at once."""

    def __init__(self) -> None:
        self.started: list[uuid.UUID] = []
        self.running = 0
        self.most = 0
        self.release = asyncio.Event()

    async def __call__(self, job_envelope: Envelope) -> None:
        self.started.append(job_envelope.id)
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.release.wait()
        finally:
            self.running -= 1


def _bus(broker: Broker, *, max_packed_jobs: int) -> RabbitMQBus:
    """A bus of the test's namespace (cleaned up with the others) with its own pack size."""
    bus = RabbitMQBus(broker.url, namespace=broker.namespace, max_packed_jobs=max_packed_jobs)
    broker.buses.append(bus)
    return bus


async def _declared(broker: Broker, region: str) -> None:
    """Declare the region's job queue, then leave it unconsumed."""
    bus = broker.bus()
    bus.consume_jobs(region, Held(), concurrency=1)
    await bus.start()
    await bus.close()


async def _unconsumed(broker: Broker, queue: str) -> bool:
    declared = await (await broker.channel()).declare_queue(queue, passive=True)
    return declared.declaration_result.consumer_count == 0


async def _ready_is(broker: Broker, queue: str, count: int) -> bool:
    return await broker.ready_count(queue) == count


async def test_a_regions_jobs_travel_in_packs_a_lone_or_stale_job_alone(broker: Broker) -> None:
    await _declared(broker, "eu")
    await _declared(broker, "us")
    scheduler = broker.bus()
    await scheduler.start()
    soon = [job("eu", deadline_in=timedelta(seconds=20)) for _ in range(20)]
    later = [job("eu", deadline_in=timedelta(seconds=40)) for _ in range(20)]
    stale = job("eu", deadline_in=timedelta(seconds=-1))
    lone = job("us", deadline_in=timedelta(seconds=30))
    # The regions interleaved, as a tick's jobs come: each region's are packed in order.
    eu = [*soon, *later]
    published = [(j, "eu") for j in eu[:10]] + [(lone, "us"), (stale, "eu")]
    published += [(j, "eu") for j in eu[10:]]

    assert await scheduler.publish_jobs(published) == []

    taken = await broker.take_all(scheduler.job_queue_name("eu"))
    assert [m.content_type for m in taken] == [PACKED_CONTENT_TYPE] * 3
    assert [(m.headers or {}).get(COUNT_HEADER) for m in taken] == [16, 16, 8]
    assert events_of(taken) == eu  # the stale one went alone, and expired
    # A pack expires at its latest deadline: the first holds only the 20 s jobs, the second
    # reaches into the 40 s ones.
    expirations = [m.expiration for m in taken]  # seconds, as aio-pika decodes them
    assert all(isinstance(e, float) for e in expirations)
    assert 15 < cast(float, expirations[0]) <= 20
    assert 35 < cast(float, expirations[1]) <= 40
    [alone] = await broker.take_all(scheduler.job_queue_name("us"))
    assert alone.content_type == "application/json"
    assert Envelope.from_bytes(alone.body) == lone
    assert alone.message_id == str(lone.id)
    dead = await broker.take_all(scheduler.dead_letter_queue)
    assert [m.message_id for m in dead] == [str(stale.id)]


async def test_the_packs_of_a_region_are_split_between_two_consumers(broker: Broker) -> None:
    # Packs of 4 and consumers running 4 jobs at once: a consumer holds its 4 running and two
    # packs none of whose jobs started (its prefetch), 12 of the 40 jobs; the rest is left in
    # the queue for the other one.
    scheduler = _bus(broker, max_packed_jobs=4)
    first, second = _bus(broker, max_packed_jobs=4), _bus(broker, max_packed_jobs=4)
    a, b = Held(), Held()
    first.consume_jobs("eu", a, concurrency=4)
    second.consume_jobs("eu", b, concurrency=4)
    await scheduler.start()
    jobs = [job("eu", deadline_in=timedelta(seconds=60)) for _ in range(40)]
    assert await scheduler.publish_jobs([(j, "eu") for j in jobs]) == []
    queue = scheduler.job_queue_name("eu")
    assert await broker.ready_count(queue) == 10

    await first.start()
    await eventually(lambda: a.running == 4, what="the first consumer at work")
    await eventually(lambda: _ready_is(broker, queue, 7), what="two more packs prefetched")
    assert a.most == 4
    # The second consumer, started while the first is busy, gets packs of its own.
    await second.start()
    await eventually(lambda: b.running == 4, what="the second consumer at work")
    await eventually(lambda: _ready_is(broker, queue, 4), what="its two packs prefetched")

    a.release.set()
    b.release.set()
    await eventually(lambda: len(a.started) + len(b.started) == 40, what="every job ran")
    await eventually(lambda: a.running == b.running == 0, what="every job finished")
    assert Counter(a.started + b.started) == Counter(j.id for j in jobs)  # each once
    assert a.most == 4
    assert b.most == 4
    assert len(a.started) >= 12
    assert len(b.started) >= 12
    assert await broker.ready_count(queue) == 0


async def test_a_consumer_killed_mid_pack_makes_no_job_run_twice(broker: Broker) -> None:
    # The consumer process runs one job at a time and never finishes it: it holds the first
    # pack (one job started, so acknowledged) and the second (nothing started).
    await _declared(broker, "eu")
    scheduler = _bus(broker, max_packed_jobs=8)
    await scheduler.start()
    first = [job("eu", deadline_in=timedelta(seconds=60)) for _ in range(8)]
    second = [job("eu", deadline_in=timedelta(seconds=60)) for _ in range(8)]
    assert await scheduler.publish_jobs([(j, "eu") for j in [*first, *second]]) == []
    queue = scheduler.job_queue_name("eu")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.common.test_rabbitmq_job_packs",
        broker.url,
        broker.namespace,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        said = await asyncio.wait_for(_started(process.stdout), 30)
        assert said == str(first[0].id)
        await eventually(lambda: _ready_is(broker, queue, 0), what="both packs delivered")
        process.send_signal(signal.SIGKILL)  # mid-pack: one job running, fifteen waiting
        await asyncio.wait_for(process.wait(), 10)
        await eventually(lambda: _unconsumed(broker, queue), what="its consumer gone")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    # Only the pack none of whose jobs started came back, whole; the started one's jobs are
    # lost for this interval, and none of them can run a second time.
    await eventually(lambda: _ready_is(broker, queue, 1), what="the untouched pack returned")
    survivor = broker.bus()
    ran = Received()

    async def run(job_envelope: Envelope) -> None:
        await ran([job_envelope])

    survivor.consume_jobs("eu", run, concurrency=4)
    await survivor.start()
    await eventually(lambda: len(ran.envelopes) == 8, what="the returned pack ran")
    await eventually(lambda: _ready_is(broker, queue, 0), what="and was acknowledged")
    assert Counter(e.id for e in ran.envelopes) == Counter(j.id for j in second)


async def test_a_stale_job_inside_a_valid_pack_is_dropped_and_counted_by_the_probe(
    broker: Broker,
) -> None:
    scheduler, probe_bus, observer = broker.bus(), broker.bus(), broker.bus()
    results = Received()
    observer.subscribe("test.results", ["check.completed"], results)
    await observer.start()
    await scheduler.start()
    # Nothing listens on port 9: the check fails fast, and a failed check is a result too.
    stale = job("default", deadline_in=timedelta(milliseconds=300))
    fresh = job("default", deadline_in=timedelta(seconds=30))
    assert await scheduler.publish_jobs([(stale, "default"), (fresh, "default")]) == []
    queue = scheduler.job_queue_name("default")
    assert await broker.ready_count(queue) == 1  # one pack, which expires with the fresh job
    deadline = deadline_of(stale)
    await eventually(lambda: utcnow() > deadline, what="the first job's deadline passed")
    expired_before = JOBS_EXPIRED._value.get()

    probe = Probe(probe_bus, Settings(allow_private_targets=True, probe_concurrency=4))
    await probe.prepare()
    await probe_bus.start()
    await probe.start()
    try:
        await eventually(lambda: len(results.envelopes) == 1, what="the fresh job's result")
        await eventually(
            lambda: JOBS_EXPIRED._value.get() == expired_before + 1, what="the stale one counted"
        )
    finally:
        await probe.stop()
        await probe_bus.close()
    assert [r.payload["check_id"] for r in results.envelopes] == [fresh.payload["job_id"]]
    assert await broker.ready_count(queue) == 0
    assert await broker.ready_count(scheduler.dead_letter_queue) == 0


async def test_a_single_job_message_is_still_consumed_beside_packs(broker: Broker) -> None:
    await _declared(broker, "eu")
    scheduler = broker.bus()
    await scheduler.start()
    # A single-job message as a scheduler older than packing sends it.
    old_style = job("eu", deadline_in=timedelta(seconds=30))
    channel = await broker.channel()
    await channel.default_exchange.publish(
        aio_pika.Message(
            old_style.to_bytes(),
            content_type="application/json",
            message_id=str(old_style.id),
            expiration=timedelta(seconds=30),
        ),
        scheduler.job_queue_name("eu"),
    )
    packed = [job("eu", deadline_in=timedelta(seconds=30)) for _ in range(3)]
    assert await scheduler.publish_jobs([(j, "eu") for j in packed]) == []
    lone = job("eu", deadline_in=timedelta(seconds=30))
    await scheduler.publish_job(lone, "eu")
    assert await broker.ready_count(scheduler.job_queue_name("eu")) == 3

    probe_bus = broker.bus()
    ran: list[uuid.UUID] = []

    async def run(job_envelope: Envelope) -> None:
        ran.append(job_envelope.id)

    probe_bus.consume_jobs("eu", run, concurrency=2)
    await probe_bus.start()
    await eventually(lambda: len(ran) == 5, what="every job ran")
    await eventually(lambda: _ready_is(broker, scheduler.job_queue_name("eu"), 0))
    assert Counter(ran) == Counter([old_style.id, *(j.id for j in packed), lone.id])


async def test_a_failed_job_of_a_pack_is_returned_alone_and_dead_lettered_at_the_limit(
    broker: Broker,
) -> None:
    probe_bus, scheduler = broker.bus(delivery_limit=3), broker.bus(delivery_limit=3)
    poison = job("eu", deadline_in=timedelta(seconds=30))
    flaky = job("eu", deadline_in=timedelta(seconds=30))
    fine = [job("eu", deadline_in=timedelta(seconds=30)) for _ in range(5)]
    runs: Counter[uuid.UUID] = Counter()

    async def run(job_envelope: Envelope) -> None:
        runs[job_envelope.id] += 1
        if job_envelope.id == poison.id or (job_envelope.id == flaky.id and runs[flaky.id] == 1):
            raise RuntimeError("cannot run this one")

    probe_bus.consume_jobs("eu", run, concurrency=2)
    await probe_bus.start()
    await scheduler.start()
    published = [poison, *fine[:2], flaky, *fine[2:]]
    assert await scheduler.publish_jobs([(j, "eu") for j in published]) == []

    await eventually(
        lambda: _ready_is(broker, scheduler.dead_letter_queue, 1), what="poison dead-lettered"
    )
    await eventually(lambda: runs[flaky.id] == 2, what="the flaky job ran again")
    await eventually(lambda: _ready_is(broker, scheduler.job_queue_name("eu"), 0))
    assert runs == Counter({poison.id: 3, flaky.id: 2, **{j.id: 1 for j in fine}})
    [dead] = await broker.take_all(scheduler.dead_letter_queue)
    assert dead.message_id == str(poison.id)
    assert Envelope.from_bytes(dead.body) == poison


async def test_close_returns_the_jobs_of_a_started_pack_that_did_not_finish(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pingtower.common.messaging import rabbitmq

    monkeypatch.setattr(rabbitmq, "CLOSE_GRACE_SECONDS", 0.2)  # then the stuck job is cancelled
    probe_bus, scheduler = broker.bus(), broker.bus()
    held = Held()
    probe_bus.consume_jobs("eu", held, concurrency=1)
    await scheduler.start()
    jobs = [job("eu", deadline_in=timedelta(seconds=30)) for _ in range(5)]
    assert await scheduler.publish_jobs([(j, "eu") for j in jobs]) == []
    await probe_bus.start()
    await eventually(lambda: held.running == 1, what="the first job running")

    await probe_bus.close()  # an orderly stop: nothing of an acknowledged pack is lost

    returned = await broker.take_all(scheduler.job_queue_name("eu"))
    assert sorted(events_of(returned), key=lambda e: str(e.id)) == sorted(
        jobs, key=lambda e: str(e.id)
    )
    assert held.started == [jobs[0].id]


async def _started(stdout: asyncio.StreamReader) -> str:
    """The id of the first job the consumer process says it started (its log lines aside)."""
    while line := await stdout.readline():
        words = line.decode().split()
        if words[:1] == ["started"]:
            return words[1]
    raise AssertionError("the consumer process ended before starting a job")


async def _run_forever(url: str, namespace: str) -> None:
    """The killed consumer: it runs one job at a time, says which, and never finishes it."""
    bus = RabbitMQBus(url, namespace=namespace)
    never = asyncio.Event()

    async def handler(job_envelope: Envelope) -> None:
        # The message's ack, due when this job started, leaves at the end of a loop iteration
        # through a task and the coalescing writer: a few iterations, not a time.
        for _ in range(50):
            await asyncio.sleep(0)
        print(f"started {job_envelope.id}", flush=True)
        await never.wait()

    bus.consume_jobs("eu", handler, concurrency=1)
    await bus.start()
    await never.wait()


def _main(argv: Sequence[str]) -> None:
    asyncio.run(_run_forever(argv[0], argv[1]))


if __name__ == "__main__":
    _main(sys.argv[1:])
