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
