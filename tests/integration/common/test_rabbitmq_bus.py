"""The RabbitMQ transport against a real broker: routing, competing consumers, redelivery and
dead letters, publisher confirms, check-job queues per region with deadlines, orderly close."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import cast
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import pytest

from pingtower.common.events import CheckJob, Envelope, utcnow
from pingtower.common.messaging import rabbitmq
from pingtower.common.messaging.coalescing import CoalescingWriter
from pingtower.common.messaging.packing import PACKED_CONTENT_TYPE, declared_count, unpack
from pingtower.common.messaging.rabbitmq import PublishFailedError, RabbitMQBus
from tests.integration.common.broker import Broker
from tests.integration.common.tcp_proxy import TcpProxy
from tests.integration.common.waiting import eventually

pytestmark = pytest.mark.rabbitmq


def event(type_: str, **payload: object) -> Envelope:
    return Envelope(type=type_, producer="test", tenant="acme", payload=payload)


def job(region: str, *, deadline_in: timedelta) -> Envelope:
    now = utcnow()
    check = CheckJob(
        monitor_id=uuid.uuid4(),
        check_type="http",
        target="http://127.0.0.1:9/",
        timeout_seconds=1.0,
        scheduled_at=now,
        deadline=now + deadline_in,
        region=region,
    )
    return Envelope.wrap(check, producer="scheduler", tenant="acme")


def events_of(messages: Sequence[aio_pika.abc.AbstractIncomingMessage]) -> list[Envelope]:
    """The envelopes of messages taken from a queue, packed or single, in order."""
    envelopes: list[Envelope] = []
    for message in messages:
        if message.content_type == PACKED_CONTENT_TYPE:
            envelopes.extend(unpack(message.body, declared_count(message.headers)))
        else:
            envelopes.append(Envelope.from_bytes(message.body))
    return envelopes


class Received:
    """A batch handler that remembers what it was given."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.batches: list[int] = []

    async def __call__(self, batch: Sequence[Envelope]) -> None:
        self.batches.append(len(batch))
        self.envelopes.extend(batch)

    @property
    def types(self) -> list[str]:
        return [envelope.type for envelope in self.envelopes]


async def test_event_reaches_every_consumer_whose_keys_match_and_no_other(broker: Broker) -> None:
    bus = broker.bus()
    monitors, checks, everything, nothing = Received(), Received(), Received(), Received()
    bus.subscribe("monitors", ["monitor.*"], monitors)
    bus.subscribe("checks", ["check.completed"], checks)
    bus.subscribe("everything", ["#"], everything)
    bus.subscribe("slo", ["slo.#"], nothing)
    await bus.start()

    await bus.publish(
        [event("monitor.created"), event("check.completed"), event("monitor.status_changed")]
    )

    await eventually(lambda: len(everything.envelopes) == 3, what="all three events delivered")
    await eventually(lambda: len(monitors.envelopes) == 2 and len(checks.envelopes) == 1)
    await asyncio.sleep(0.1)  # room for a wrong extra delivery to show up
    assert sorted(monitors.types) == ["monitor.created", "monitor.status_changed"]
    assert checks.types == ["check.completed"]
    assert everything.types == ["monitor.created", "check.completed", "monitor.status_changed"]
    assert nothing.envelopes == []


async def test_two_buses_with_the_same_consumer_name_share_the_work(broker: Broker) -> None:
    first_bus, second_bus = broker.bus(prefetch=1), broker.bus(prefetch=1)
    first, second = Received(), Received()

    async def slow(handler: Received, batch: Sequence[Envelope]) -> None:
        await asyncio.sleep(0.005)  # long enough that one consumer cannot take everything
        await handler(batch)

    first_bus.subscribe("shared", ["work.#"], lambda b: slow(first, b), max_batch=1)
    second_bus.subscribe("shared", ["work.#"], lambda b: slow(second, b), max_batch=1)
    await first_bus.start()
    await second_bus.start()

    published = [event("work.item", n=n) for n in range(40)]
    for envelope in published:  # each a message of its own: a packed message goes to one
        await first_bus.publish([envelope])

    await eventually(lambda: len(first.envelopes) + len(second.envelopes) >= 40)
    await asyncio.sleep(0.1)
    handled = Counter(envelope.id for envelope in first.envelopes + second.envelopes)
    assert handled == Counter(envelope.id for envelope in published)  # each one exactly once
    assert first.envelopes, "the first process took a share"
    assert second.envelopes, "the second process took a share"


async def test_failing_message_is_redelivered_up_to_the_limit_then_dead_lettered(
    broker: Broker,
) -> None:
    bus = broker.bus(delivery_limit=3)
    tries_alone = 0  # a failing batch is retried one message at a time: count those tries
    handled = Received()

    async def handler(batch: Sequence[Envelope]) -> None:
        nonlocal tries_alone
        if any(envelope.payload.get("poison") for envelope in batch):
            tries_alone += len(batch) == 1
            raise RuntimeError("cannot handle this one")
        await handled(batch)

    bus.subscribe("picky", ["thing.#"], handler)
    await bus.start()
    poison, fine = event("thing.bad", poison=True), event("thing.good")

    await bus.publish([poison, fine])

    await eventually(
        lambda: _ready_is(broker, bus.dead_letter_queue, 1), what="poison dead-lettered"
    )
    assert tries_alone == 3  # the delivery limit
    assert handled.envelopes == [fine]  # the good one was not held back by its neighbour
    dead = await broker.take_all(bus.dead_letter_queue)
    assert [Envelope.from_bytes(message.body).id for message in dead] == [poison.id]


async def _ready_is(broker: Broker, queue: str, count: int) -> bool:
    return await broker.ready_count(queue) == count


async def test_undecodable_message_goes_straight_to_dead_letters(broker: Broker) -> None:
    bus = broker.bus()
    handled = Received()
    bus.subscribe("strict", ["thing.#"], handled)
    await bus.start()

    channel = await broker.channel()
    exchange = await channel.get_exchange(bus.events_exchange)
    await exchange.publish(aio_pika.Message(b"not an envelope"), "thing.created")
    await bus.publish([event("thing.created")])

    await eventually(lambda: len(handled.envelopes) == 1)
    await eventually(lambda: _ready_is(broker, bus.dead_letter_queue, 1))
    assert [m.body for m in await broker.take_all(bus.dead_letter_queue)] == [b"not an envelope"]
    assert handled.types == ["thing.created"]


async def test_publish_returns_once_the_broker_holds_every_message(broker: Broker) -> None:
    consumer_bus = broker.bus()
    consumer_bus.subscribe("audit", ["audit.#"], Received())
    await consumer_bus.start()  # declares and binds the queue
    await consumer_bus.close()  # nobody consumes: messages stay in the queue
    publisher = broker.bus()
    await publisher.start()

    published = [event("audit.entry", n=n) for n in range(25)]
    await publisher.publish(published)

    # No waiting: a confirmed message is already in its durable queue.
    taken = await broker.take_all(publisher.queue_name("audit"))
    assert events_of(taken) == published


async def test_events_published_together_arrive_whole_and_in_order_beside_jobs(
    broker: Broker,
) -> None:
    # A batch of events is sent as one frame sequence with its own delivery tags; jobs
    # published at the same time on the same channel must not take the batch's confirmations.
    consumer_bus = broker.bus()
    consumer_bus.subscribe("audit", ["audit.#"], Received())
    await consumer_bus.start()
    await consumer_bus.close()  # nobody consumes: messages stay in the queue
    publisher = broker.bus()
    await publisher.start()
    large = "x" * 300_000  # more than one AMQP frame (frame_max is 128 KiB by default)
    batches = [
        [event("audit.entry", n=n, text=large if n % 50 == 7 else "") for n in range(b, b + 100)]
        for b in range(0, 300, 100)
    ]
    jobs = [(job("eu", deadline_in=timedelta(seconds=30)), "eu") for _ in range(60)]

    unpublished, *_ = await asyncio.gather(
        publisher.publish_jobs(jobs), *(publisher.publish(batch) for batch in batches)
    )

    assert unpublished == []
    assert events_of(await broker.take_all(publisher.job_queue_name("eu"))) == [j for j, _ in jobs]
    taken = await broker.take_all(publisher.queue_name("audit"))
    received = events_of(taken)
    # Each batch whole and in its order (concurrent calls may queue in either order).
    ids = [e.id for e in received]
    chunks = [ids[i : i + 100] for i in range(0, 300, 100)]
    assert sorted(chunks) == sorted([e.id for e in batch] for batch in batches)
    assert all(
        len(e.payload["text"]) == (300_000 if e.payload["n"] % 50 == 7 else 0) for e in received
    )
    # A message's id is its (first) event's.
    assert {m.message_id for m in taken} <= {str(e.id) for e in received}
    # The large events travel alone, the others packed between them.
    assert sum(1 for m in taken if m.content_type != PACKED_CONTENT_TYPE) == 6
    assert len(taken) == 15


async def test_publish_raises_when_the_broker_refuses(broker: Broker) -> None:
    bus = broker.bus()
    await bus.start()
    channel = await broker.channel()
    await channel.exchange_delete(bus.events_exchange)  # the broker now answers 404

    with pytest.raises(PublishFailedError):
        await bus.publish([event("anything.happened")])


async def test_publish_before_start_raises(broker: Broker) -> None:
    with pytest.raises(ConnectionError):
        await broker.bus().publish([event("anything.happened")])


async def test_job_goes_only_to_its_regions_queue(broker: Broker) -> None:
    probe_bus, scheduler = broker.bus(), broker.bus()
    europe: list[Envelope] = []

    async def run(job_envelope: Envelope) -> None:
        europe.append(job_envelope)

    probe_bus.consume_jobs("eu", run, concurrency=2)
    await probe_bus.start()
    await scheduler.start()
    for_europe, for_america = (
        job("eu", deadline_in=timedelta(seconds=30)),
        job("us", deadline_in=timedelta(seconds=30)),
    )

    await scheduler.publish_job(for_europe, "eu")
    await scheduler.publish_job(for_america, "us")

    await eventually(lambda: len(europe) == 1)
    assert [j.id for j in europe] == [for_europe.id]
    assert CheckJob.model_validate(europe[0].payload).region == "eu"
    assert await broker.ready_count(scheduler.job_queue_name("us")) == 1  # waits for its probe


async def test_job_past_its_deadline_is_not_delivered(broker: Broker) -> None:
    scheduler, probe_bus = broker.bus(), broker.bus()
    await scheduler.start()
    stale = job("ap", deadline_in=timedelta(seconds=-1))
    almost_stale = job("ap", deadline_in=timedelta(milliseconds=50))
    fresh = job("ap", deadline_in=timedelta(seconds=30))
    for each in (stale, almost_stale, fresh):
        await scheduler.publish_job(each, "ap")
    await asyncio.sleep(0.2)  # the probes of the region are late: almost_stale expires too

    received: list[Envelope] = []

    async def run(job_envelope: Envelope) -> None:
        received.append(job_envelope)

    probe_bus.consume_jobs("ap", run, concurrency=4)
    await probe_bus.start()

    await eventually(lambda: len(received) >= 1)
    await asyncio.sleep(0.1)
    assert [j.id for j in received] == [fresh.id]


async def test_jobs_published_together_are_all_confirmed_in_their_regions_queues(
    broker: Broker,
) -> None:
    scheduler = broker.bus()
    await scheduler.start()
    jobs = [(job("eu", deadline_in=timedelta(seconds=30)), "eu") for _ in range(40)]
    jobs += [(job("us", deadline_in=timedelta(seconds=30)), "us") for _ in range(25)]

    unpublished = await scheduler.publish_jobs(jobs)

    assert unpublished == []
    # No waiting: a confirmed job is already in its durable queue (16 to a message).
    assert await broker.ready_count(scheduler.job_queue_name("eu")) == 3
    assert await broker.ready_count(scheduler.job_queue_name("us")) == 2
    taken = events_of(await broker.take_all(scheduler.job_queue_name("us")))
    assert taken == [envelope for envelope, region in jobs if region == "us"]


async def test_a_job_the_broker_cannot_route_is_returned_and_the_others_are_taken(
    broker: Broker,
) -> None:
    scheduler = broker.bus()
    await scheduler.start()
    await scheduler.publish_job(job("eu", deadline_in=timedelta(seconds=30)), "eu")
    channel = await broker.channel()
    await channel.queue_delete(scheduler.job_queue_name("eu"))  # nothing routes "eu" now
    lost = job("eu", deadline_in=timedelta(seconds=30))
    kept = [job("us", deadline_in=timedelta(seconds=30)) for _ in range(3)]

    unpublished = await scheduler.publish_jobs(
        [(kept[0], "us"), (lost, "eu"), *[(k, "us") for k in kept[1:]]]
    )

    assert [(u.job.id, u.region) for u in unpublished] == [(lost.id, "eu")]
    assert isinstance(unpublished[0].error, Exception)
    assert events_of(await broker.take_all(scheduler.job_queue_name("us"))) == kept


async def test_jobs_published_together_expire_at_their_deadline(broker: Broker) -> None:
    scheduler, probe_bus = broker.bus(), broker.bus()
    await scheduler.start()
    stale = job("ap", deadline_in=timedelta(seconds=-1))
    fresh = job("ap", deadline_in=timedelta(seconds=30))
    assert await scheduler.publish_jobs([(stale, "ap"), (fresh, "ap")]) == []
    received: list[Envelope] = []

    async def run(job_envelope: Envelope) -> None:
        received.append(job_envelope)

    probe_bus.consume_jobs("ap", run, concurrency=4)
    await probe_bus.start()

    await eventually(lambda: len(received) >= 1)
    # Expired jobs are dead-lettered: the stale one is there, not in a probe's hands.
    await eventually(
        lambda: _ready_is(broker, scheduler.dead_letter_queue, 1), what="stale job dropped"
    )
    dead = await broker.take_all(scheduler.dead_letter_queue)
    assert [m.message_id for m in dead] == [str(stale.id)]
    assert [j.id for j in received] == [fresh.id]


async def test_publish_jobs_before_start_raises(broker: Broker) -> None:
    with pytest.raises(ConnectionError):
        await broker.bus().publish_jobs([(job("eu", deadline_in=timedelta(seconds=30)), "eu")])


async def test_jobs_run_concurrently_up_to_the_limit(broker: Broker) -> None:
    bus = broker.bus()
    running, most, done = 0, 0, 0
    release = asyncio.Event()

    async def run(_job: Envelope) -> None:
        nonlocal running, most, done
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1
        done += 1

    bus.consume_jobs("eu", run, concurrency=3)
    await bus.start()
    for _ in range(7):
        await bus.publish_job(job("eu", deadline_in=timedelta(seconds=30)), "eu")

    await eventually(lambda: running == 3, what="three jobs running")
    await asyncio.sleep(0.1)
    assert most == 3  # the other four wait, delivered (the prefetch: two) or in the queue
    release.set()
    await eventually(lambda: done == 7)
    assert most == 3


async def test_failed_job_is_returned_and_run_again(broker: Broker) -> None:
    bus = broker.bus()
    attempts: Counter[uuid.UUID] = Counter()

    async def run(job_envelope: Envelope) -> None:
        attempts[job_envelope.id] += 1
        if attempts[job_envelope.id] == 1:
            raise RuntimeError("probe crashed")

    bus.consume_jobs("eu", run, concurrency=1)
    await bus.start()
    flaky = job("eu", deadline_in=timedelta(seconds=30))
    await bus.publish_job(flaky, "eu")

    await eventually(lambda: attempts[flaky.id] == 2)
    await asyncio.sleep(0.1)
    assert attempts[flaky.id] == 2  # acknowledged after the second, successful run
    assert await broker.ready_count(bus.job_queue_name("eu")) == 0


async def test_jobs_finished_behind_a_running_one_are_acknowledged_and_it_is_not(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The 13 jobs travel as one pack, acknowledged when its first job starts: the others run
    # beside the stuck one, and at close the stuck one, cancelled, goes back to the queue alone.
    monkeypatch.setattr(rabbitmq, "CLOSE_GRACE_SECONDS", 0.2)  # then the stuck job is cancelled
    probe_bus, scheduler = broker.bus(), broker.bus()
    runs: Counter[uuid.UUID] = Counter()
    stuck = job("eu", deadline_in=timedelta(seconds=30))
    others = [job("eu", deadline_in=timedelta(seconds=30)) for _ in range(12)]
    never = asyncio.Event()

    async def run(job_envelope: Envelope) -> None:
        runs[job_envelope.id] += 1
        if job_envelope.id == stuck.id:
            await never.wait()  # a check that has not finished when the probe stops

    probe_bus.consume_jobs("eu", run, concurrency=4)
    await scheduler.start()
    assert await scheduler.publish_jobs([(stuck, "eu"), *((o, "eu") for o in others)]) == []
    await probe_bus.start()

    await eventually(lambda: all(runs[o.id] == 1 for o in others), what="the others ran")
    assert runs[stuck.id] == 1
    await probe_bus.close()

    # Only the unfinished job went back to the queue; every finished one ran once.
    returned = await broker.take_all(scheduler.job_queue_name("eu"))
    assert [m.message_id for m in returned] == [str(stuck.id)]
    assert set(runs.values()) == {1}


async def test_an_event_batch_is_acknowledged_but_a_failed_message_below_it_is_returned(
    broker: Broker,
) -> None:
    bus = broker.bus(delivery_limit=2)
    handled = Received()

    async def handler(batch: Sequence[Envelope]) -> None:
        if any(envelope.payload.get("poison") for envelope in batch):
            raise RuntimeError("cannot handle this one")
        await handled(batch)

    bus.subscribe("mixed", ["thing.#"], handler)
    await bus.start()
    poison = event("thing.bad", poison=True)
    fine = [event("thing.good", n=n) for n in range(20)]

    await bus.publish([poison, *fine])

    await eventually(
        lambda: _ready_is(broker, bus.dead_letter_queue, 1), what="poison dead-lettered"
    )
    await eventually(lambda: len(handled.envelopes) == 20, what="the good ones handled")
    await bus.close()
    # Each good one handled once and acknowledged (nothing came back), the poison returned
    # on its own until its limit.
    assert Counter(e.id for e in handled.envelopes) == Counter(e.id for e in fine)
    assert await broker.ready_count(bus.queue_name("mixed")) == 0
    dead = await broker.take_all(bus.dead_letter_queue)
    assert [Envelope.from_bytes(message.body).id for message in dead] == [poison.id]


async def test_close_lets_the_running_handler_finish_and_acknowledges_it(broker: Broker) -> None:
    bus = broker.bus()
    started, finished = asyncio.Event(), Received()

    async def slow(batch: Sequence[Envelope]) -> None:
        started.set()
        await asyncio.sleep(0.3)
        await finished(batch)

    bus.subscribe("slow", ["slow.#"], slow)
    await bus.start()
    await bus.publish([event("slow.work")])
    await asyncio.wait_for(started.wait(), 10)

    await bus.close()

    assert finished.types == ["slow.work"]
    assert await broker.ready_count(bus.queue_name("slow")) == 0  # acked, not redelivered


async def test_check_fails_when_the_bus_is_not_connected(broker: Broker) -> None:
    bus = broker.bus()
    with pytest.raises(ConnectionError):
        await bus.check()
    await bus.start()
    await bus.check()
    await bus.close()
    with pytest.raises(ConnectionError):
        await bus.check()


async def test_bus_reconnects_and_keeps_consuming_after_the_connection_drops(
    broker: Broker,
) -> None:
    target = urlsplit(broker.url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5672)
    await proxy.start()
    through_proxy = target._replace(
        netloc=f"{target.username}:{target.password}@127.0.0.1:{proxy.port}",
        query="reconnect_interval=0.2",
    )
    bus = broker.bus(url=urlunsplit(through_proxy))
    handled = Received()
    bus.subscribe("steady", ["steady.#"], handled)
    try:
        await bus.start()
        await bus.publish([event("steady.before")])
        await eventually(lambda: handled.types == ["steady.before"])

        proxy.cut()  # what a broker restart looks like from here

        await eventually(lambda: _is_ready(bus), what="reconnected")
        await _publish_when_reconnected(bus, event("steady.after"))
        await eventually(lambda: len(handled.envelopes) >= 2, what="consumed after reconnect")
        assert handled.types == ["steady.before", "steady.after"]
    finally:
        await bus.close()
        await proxy.close()


async def test_probe_keeps_consuming_jobs_after_the_connection_drops(broker: Broker) -> None:
    # Jobs are consumed on aiormq's channel directly, which aio-pika does not restore by
    # itself after a reconnect.
    target = urlsplit(broker.url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5672)
    await proxy.start()
    through_proxy = target._replace(
        netloc=f"{target.username}:{target.password}@127.0.0.1:{proxy.port}",
        query="reconnect_interval=0.2",
    )
    probe_bus, scheduler = broker.bus(url=urlunsplit(through_proxy)), broker.bus()
    ran: list[uuid.UUID] = []

    async def run(job_envelope: Envelope) -> None:
        ran.append(job_envelope.id)

    probe_bus.consume_jobs("eu", run, concurrency=4)
    try:
        await probe_bus.start()
        await scheduler.start()
        before = job("eu", deadline_in=timedelta(seconds=30))
        await scheduler.publish_job(before, "eu")
        await eventually(lambda: ran == [before.id], what="the job before the drop ran")

        proxy.cut()  # what a broker restart looks like from here

        await eventually(lambda: _is_ready(probe_bus), what="reconnected")
        after = job("eu", deadline_in=timedelta(seconds=30))
        await scheduler.publish_job(after, "eu")
        await eventually(lambda: after.id in ran, what="the job after the drop ran")
        await probe_bus.close()
        assert await broker.ready_count(scheduler.job_queue_name("eu")) == 0  # acknowledged
    finally:
        await probe_bus.close()
        await proxy.close()


async def test_probe_declares_its_job_queue_again_when_the_broker_deletes_it(
    broker: Broker,
) -> None:
    probe_bus = broker.bus()
    ran: list[uuid.UUID] = []

    async def run(job_envelope: Envelope) -> None:
        ran.append(job_envelope.id)

    probe_bus.consume_jobs("eu", run, concurrency=4)
    await probe_bus.start()
    channel = await broker.channel()
    await channel.queue_delete(probe_bus.job_queue_name("eu"))  # the consumer is cancelled

    await eventually(
        lambda: _exists(broker, probe_bus.job_queue_name("eu")), what="queue declared again"
    )
    scheduler = broker.bus()
    await scheduler.start()
    again = job("eu", deadline_in=timedelta(seconds=30))
    await scheduler.publish_job(again, "eu")
    await eventually(lambda: ran == [again.id], what="the job on the new queue ran")


async def _exists(broker: Broker, queue: str) -> bool:
    try:
        await broker.ready_count(queue)
    except aio_pika.exceptions.ChannelClosed:
        return False
    return True


async def _publish_when_reconnected(bus: RabbitMQBus, envelope: Envelope) -> None:
    """What the outbox relay does: retry until a publish is confirmed (bounded here)."""
    for _ in range(100):
        try:
            await bus.publish([envelope])
            return
        except (PublishFailedError, ConnectionError):
            await asyncio.sleep(0.1)
    raise AssertionError("no publish confirmed within 10 s of the drop")


async def _is_ready(bus: RabbitMQBus) -> bool:
    try:
        await bus.check()
    except ConnectionError:
        return False
    return True


async def test_consumer_subscribed_after_start_receives_events(broker: Broker) -> None:
    bus = broker.bus()
    await bus.start()
    late = Received()

    bus.subscribe("late", ["late.#"], late)

    # The queue and its bindings appear in the background; what is published before the
    # binding exists reaches nobody, so keep publishing until the consumer is there.
    for _ in range(100):
        await bus.publish([event("late.arrival")])
        if late.envelopes:
            break
        await asyncio.sleep(0.05)
    assert late.envelopes, "the late consumer received nothing within 5 s"
    assert set(late.types) == {"late.arrival"}


async def test_frames_written_in_one_loop_iteration_leave_in_one_write() -> None:
    received = bytearray()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            received.extend(data)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _reader, inner = await asyncio.open_connection("127.0.0.1", port)
    writes: list[int] = []

    class Counting:
        """The real writer, counting the writes that reach it."""

        def write(self, data: bytes) -> None:
            writes.append(len(data))
            inner.write(data)

        def __getattr__(self, name: str) -> object:
            return getattr(inner, name)

    writer = CoalescingWriter(cast(asyncio.StreamWriter, Counting()))
    try:
        for n in range(50):
            writer.write(b"frame%02d;" % n)
        assert writes == []
        await asyncio.sleep(0)  # the end of this loop iteration
        assert writes == [400]
        writer.write(b"last;")
        await writer.drain()  # flow control only (the transport is not full): no write yet
        assert writes == [400]
        await asyncio.sleep(0)
        assert writes == [400, 5]
    finally:
        writer.close()
        await writer.wait_closed()
    await eventually(lambda: len(received) == 405)
    assert bytes(received) == b"".join(b"frame%02d;" % n for n in range(50)) + b"last;"
    server.close()
    await server.wait_closed()
