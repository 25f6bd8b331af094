"""The in-process bus gathers messages published close together into one batch (one consumer
transaction) instead of handing each over on its own, and routes by topic once per event type."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

from pingtower.common.events import Envelope, MonitorDeleted
from pingtower.common.messaging.inprocess import InProcessBus


def event(event_type: str = "monitor.deleted") -> Envelope:
    return Envelope(
        type=event_type,
        producer="test",
        tenant="t",
        payload=MonitorDeleted(monitor_id=uuid.uuid4()).model_dump(mode="json"),
    )


class Batches:
    def __init__(self) -> None:
        self.sizes: list[int] = []

    async def __call__(self, batch: Sequence[Envelope]) -> None:
        self.sizes.append(len(batch))


async def publish_trickle(bus: InProcessBus, count: int, gap: float) -> None:
    """`count` publishers, one message each, `gap` seconds apart (like probes finishing)."""

    async def one(index: int) -> None:
        await asyncio.sleep(index * gap)
        await bus.publish([event()])

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), 5)


async def test_messages_trickling_in_within_the_linger_share_one_batch() -> None:
    bus = InProcessBus(linger_seconds=0.2)
    batches = Batches()
    bus.subscribe("c", ["monitor.*"], batches, max_batch=100)
    await bus.start()
    try:
        await publish_trickle(bus, count=10, gap=0.005)
    finally:
        await bus.close()
    assert batches.sizes == [10]


async def test_without_a_linger_each_trickling_message_is_its_own_batch() -> None:
    bus = InProcessBus(linger_seconds=0)
    batches = Batches()
    bus.subscribe("c", ["monitor.*"], batches, max_batch=100)
    await bus.start()
    try:
        await publish_trickle(bus, count=5, gap=0.05)
    finally:
        await bus.close()
    assert sum(batches.sizes) == 5
    assert len(batches.sizes) >= 4  # (a stalled loop may merge two; none waits for a batch)


async def test_a_consumer_subscribed_after_a_publish_still_gets_later_events() -> None:
    # Routes are cached per event type; a new subscription must not be missed.
    bus = InProcessBus(linger_seconds=0)
    first, second = Batches(), Batches()
    bus.subscribe("first", ["monitor.deleted"], first)
    await bus.start()
    try:
        await asyncio.wait_for(bus.publish([event()]), 5)
        bus.subscribe("second", ["monitor.#"], second)
        await asyncio.wait_for(bus.publish([event()]), 5)
    finally:
        await bus.close()
    assert sum(first.sizes) == 2
    assert sum(second.sizes) == 1


async def taken(bus: InProcessBus, consumer: str) -> None:
    """Wait (bounded) until the consumer has taken every published message off its queue."""
    async with asyncio.timeout(5):
        while bus.pending(consumer):
            await asyncio.sleep(0.005)


async def test_a_type_with_a_longer_linger_fills_bigger_batches() -> None:
    bus = InProcessBus(linger_seconds=0.01, linger_by_type={"monitor.deleted": 0.5})
    batches = Batches()
    bus.subscribe("c", ["monitor.*"], batches, max_batch=100)
    await bus.start()
    try:
        # 0.04 s apart: far beyond the default linger, well within the type's.
        await publish_trickle(bus, count=6, gap=0.04)
    finally:
        await bus.close()
    assert batches.sizes == [6]


async def test_an_urgent_message_brings_a_long_linger_forward() -> None:
    bus = InProcessBus(linger_seconds=0.02, linger_by_type={"monitor.deleted": 30.0})
    batches = Batches()
    bus.subscribe("c", ["monitor.*"], batches, max_batch=100)
    await bus.start()
    try:
        slow = asyncio.create_task(bus.publish([event("monitor.deleted")]))
        await taken(bus, "c")  # the consumer holds it and lingers for up to 30 s
        assert batches.sizes == []
        # Without being brought forward the batch would wait 30 s: the bound would fail.
        await asyncio.wait_for(bus.publish([event("monitor.updated")]), 5)
        await asyncio.wait_for(slow, 5)
    finally:
        await bus.close()
    assert batches.sizes == [2]


async def test_a_batch_that_fills_during_a_linger_goes_at_once() -> None:
    bus = InProcessBus(linger_seconds=30.0)
    batches = Batches()
    bus.subscribe("c", ["monitor.*"], batches, max_batch=4)
    await bus.start()
    try:
        first = asyncio.create_task(bus.publish([event()]))
        await taken(bus, "c")  # the consumer holds the first one and lingers
        await asyncio.wait_for(bus.publish([event(), event(), event()]), 5)
        await asyncio.wait_for(first, 5)
    finally:
        await bus.close()
    assert batches.sizes == [4]
