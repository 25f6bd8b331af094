"""Events published together travel as one AMQP message (common/messaging/packing.py), against
a real broker: what goes on the wire, how consumers get the envelopes, and that every guarantee
of a single message holds for a packed one (failures of some of its envelopes, the delivery
limit, a consumer killed before acknowledging it, broadcast, undecodable packs)."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from uuid import UUID

import aio_pika
import pytest

from pingtower.common.events import Envelope
from pingtower.common.messaging.packing import (
    COUNT_HEADER,
    PACKED_CONTENT_TYPE,
    declared_count,
    unpack,
)
from pingtower.common.messaging.rabbitmq import RabbitMQBus
from tests.integration.common.broker import Broker
from tests.integration.common.test_rabbitmq_bus import Received, event, events_of
from tests.integration.common.waiting import eventually

pytestmark = pytest.mark.rabbitmq

REPO_ROOT = Path(__file__).resolve().parents[3]


async def _declared(broker: Broker, consumer: str, keys: Sequence[str]) -> None:
    """Declare and bind `consumer`'s queue, then leave it unconsumed."""
    bus = broker.bus()
    bus.subscribe(consumer, keys, Received())
    await bus.start()
    await bus.close()


async def test_consecutive_events_of_one_type_travel_as_one_message_a_lone_event_as_before(
    broker: Broker,
) -> None:
    await _declared(broker, "audit", ["#"])
    publisher = broker.bus()
    await publisher.start()
    checks = [event("check.completed", n=n) for n in range(30)]
    lone = event("monitor.created")
    more = [event("check.completed", n=n) for n in range(30, 33)]

    await publisher.publish([*checks, lone, *more])

    taken = await broker.take_all(publisher.queue_name("audit"))
    # Runs of one routing key, in order: the order every queue sees is the published one.
    assert [m.content_type for m in taken] == [
        PACKED_CONTENT_TYPE,
        "application/json",
        PACKED_CONTENT_TYPE,
    ]
    assert [(m.headers or {}).get(COUNT_HEADER) for m in taken] == [30, None, 3]
    keys = [m.routing_key for m in taken]
    assert keys == ["check.completed", "monitor.created", "check.completed"]
    assert Envelope.from_bytes(taken[1].body) == lone  # a lone event is one envelope
    assert taken[1].message_id == str(lone.id)
    assert events_of(taken) == [*checks, lone, *more]


async def test_a_packed_message_reaches_the_handler_in_batches_of_at_most_max_batch(
    broker: Broker,
) -> None:
    await _declared(broker, "small", ["thing.#"])
    publisher = broker.bus()
    await publisher.start()
    published = [event("thing.done", n=n) for n in range(30)]
    await publisher.publish(published)
    assert await broker.ready_count(publisher.queue_name("small")) == 1  # one message

    consumer = broker.bus()
    handled = Received()
    consumer.subscribe("small", ["thing.#"], handled, max_batch=7)
    await consumer.start()

    await eventually(lambda: len(handled.envelopes) == 30, what="all 30 events handled")
    await consumer.close()
    assert handled.envelopes == published  # in order, each once
    assert max(handled.batches) <= 7
    assert await broker.ready_count(publisher.queue_name("small")) == 0  # acknowledged


async def test_the_failed_event_of_a_packed_message_is_retried_alone_then_dead_lettered(
    broker: Broker,
) -> None:
    bus = broker.bus(delivery_limit=3)
    tries_alone = 0
    handled = Received()

    async def handler(batch: Sequence[Envelope]) -> None:
        nonlocal tries_alone
        if any(envelope.payload.get("poison") for envelope in batch):
            tries_alone += len(batch) == 1
            raise RuntimeError("cannot handle this one")
        await handled(batch)

    bus.subscribe("picky", ["thing.#"], handler)
    await bus.start()
    fine = [event("thing.done", n=n) for n in range(10)]
    poison = event("thing.done", poison=True)

    await bus.publish([*fine[:4], poison, *fine[4:]])  # one packed message of 11

    await eventually(
        lambda: _ready_is(broker, bus.dead_letter_queue, 1), what="poison dead-lettered"
    )
    await eventually(lambda: _settled(bus), what="pack acknowledged")
    await bus.close()
    # The others were handled once: the pack was acknowledged, not returned.
    assert Counter(e.id for e in handled.envelopes) == Counter(e.id for e in fine)
    assert tries_alone == 3  # the delivery limit counts the pack's delivery too
    assert await broker.ready_count(bus.queue_name("picky")) == 0
    dead = await broker.take_all(bus.dead_letter_queue)
    assert [Envelope.from_bytes(message.body).id for message in dead] == [poison.id]


async def test_at_the_limit_the_failed_event_of_a_packed_message_goes_to_dead_letters(
    broker: Broker,
) -> None:
    bus = broker.bus(delivery_limit=1)
    handled = Received()

    async def handler(batch: Sequence[Envelope]) -> None:
        if any(envelope.payload.get("poison") for envelope in batch):
            raise RuntimeError("cannot handle this one")
        await handled(batch)

    bus.subscribe("strict", ["thing.#"], handler)
    await bus.start()
    fine = [event("thing.done", n=n) for n in range(5)]
    poison = event("thing.done", poison=True)

    await bus.publish([poison, *fine])

    await eventually(
        lambda: _ready_is(broker, bus.dead_letter_queue, 1), what="poison dead-lettered"
    )
    await eventually(lambda: len(handled.envelopes) == 5)
    await eventually(lambda: _settled(bus), what="pack acknowledged")
    await bus.close()
    assert await broker.ready_count(bus.queue_name("strict")) == 0
    dead = await broker.take_all(bus.dead_letter_queue)
    assert [Envelope.from_bytes(message.body).id for message in dead] == [poison.id]
    assert (dead[0].headers or {}).get("x-pingtower-returned-to") == bus.queue_name("strict")


async def test_a_consumer_killed_before_acknowledging_a_packed_message_leaves_it_whole(
    broker: Broker,
) -> None:
    await _declared(broker, "fragile", ["#"])
    publisher = broker.bus()
    await publisher.start()
    published = [event("thing.done", n=n) for n in range(20)]
    await publisher.publish(published)
    consumer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.common.consumer_process",
        broker.url,
        broker.namespace,
        "fragile",
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert consumer.stdout is not None
        line = b""
        while not line.startswith(b"handling"):
            line = await asyncio.wait_for(consumer.stdout.readline(), 30)
            assert line, "the consumer process ended before handling"
        assert line.strip() == b"handling 20"  # the whole pack in its handler
    finally:
        consumer.send_signal(signal.SIGKILL)  # in the handler: nothing acknowledged
        await asyncio.wait_for(consumer.wait(), 10)

    await eventually(
        lambda: _ready_is(broker, publisher.queue_name("fragile"), 1), what="pack returned"
    )
    taken = await broker.take_all(publisher.queue_name("fragile"))
    assert [m.redelivered for m in taken] == [True]
    assert events_of(taken) == published


async def test_every_broadcast_subscriber_gets_every_event_of_a_packed_message(
    broker: Broker,
) -> None:
    first_bus, second_bus = broker.bus(), broker.bus()
    first, second = Received(), Received()
    first_bus.subscribe("live", ["thing.#"], first, broadcast=True)
    second_bus.subscribe("live", ["thing.#"], second, broadcast=True)
    await first_bus.start()
    await second_bus.start()
    published = [event("thing.done", n=n) for n in range(25)]

    await first_bus.publish(published)

    await eventually(lambda: len(first.envelopes) == 25 and len(second.envelopes) == 25)
    assert first.envelopes == published
    assert second.envelopes == published


async def test_an_undecodable_packed_message_is_dead_lettered_and_the_rest_handled(
    broker: Broker,
) -> None:
    bus = broker.bus()
    handled = Received()
    bus.subscribe("strict", ["thing.#"], handled)
    await bus.start()
    exchange = await (await broker.channel()).get_exchange(bus.events_exchange)
    two = [event("thing.done", n=n) for n in range(2)]
    body = b"[" + b",".join(e.to_bytes() for e in two) + b"]"
    # It says three events and holds two: a truncated or tampered message, rejected whole.
    await exchange.publish(
        aio_pika.Message(body, content_type=PACKED_CONTENT_TYPE, headers={COUNT_HEADER: 3}),
        "thing.done",
    )
    fine = [event("thing.done", n=n) for n in range(3)]
    await bus.publish(fine)

    await eventually(lambda: len(handled.envelopes) == 3)
    await eventually(lambda: _ready_is(broker, bus.dead_letter_queue, 1))
    await bus.close()
    assert handled.envelopes == fine
    [dead] = await broker.take_all(bus.dead_letter_queue)
    assert dead.body == body
    assert [e.id for e in unpack(dead.body, 2)] == [e.id for e in two]
    assert declared_count(dead.headers) == 3


async def test_a_bus_that_does_not_pack_sends_each_event_alone(broker: Broker) -> None:
    await _declared(broker, "audit", ["#"])
    publisher = broker.bus(max_packed_events=1)
    await publisher.start()
    published = [event("check.completed", n=n) for n in range(5)]

    await publisher.publish(published)

    taken = await broker.take_all(publisher.queue_name("audit"))
    assert [m.content_type for m in taken] == ["application/json"] * 5
    assert [UUID(m.message_id or "") for m in taken] == [e.id for e in published]
    assert [Envelope.from_bytes(m.body) for m in taken] == published


async def _ready_is(broker: Broker, queue: str, count: int) -> bool:
    return await broker.ready_count(queue) == count


def _settled(bus: RabbitMQBus) -> bool:
    """Whether the bus has no failed message still waiting to be returned or acknowledged.

    A republished event shows in its queue a moment before the broker's confirmation reaches
    the bus, and only then is the pack acknowledged; a bus closed in between returns the whole
    pack (at least once, which the inbox absorbs, but not what these tests look at)."""
    return not bus._delayed_nacks
