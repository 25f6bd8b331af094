"""Live events reach the connections of their workspace only, and a slow one loses the oldest."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from pingtower.web.domain.fanout import Fanout, LiveEvent


def event(tenant: str, n: int) -> LiveEvent:
    return LiveEvent(tenant, "monitor.status_changed", f'{{"n": {n}}}')


async def test_an_event_reaches_only_the_connections_of_its_workspace() -> None:
    fanout = Fanout()
    mine, other = fanout.subscribe("acme"), fanout.subscribe("globex")

    assert fanout.publish(event("acme", 1)) == 1

    assert await mine.next(1) == ([event("acme", 1)], 0)
    assert await other.next(0.01) is None


async def test_a_waiting_connection_wakes_up_when_an_event_arrives() -> None:
    fanout = Fanout()
    subscription = fanout.subscribe("acme")
    waiting = asyncio.create_task(subscription.next(5))
    await asyncio.sleep(0)

    fanout.publish(event("acme", 7))

    assert await asyncio.wait_for(waiting, 1) == ([event("acme", 7)], 0)


@given(capacity=st.integers(1, 20), sent=st.integers(0, 60))
async def test_a_slow_connection_keeps_the_newest_events_and_counts_the_dropped(
    capacity: int, sent: int
) -> None:
    fanout = Fanout(capacity)
    subscription = fanout.subscribe("acme")
    for n in range(sent):
        fanout.publish(event("acme", n))

    result = await subscription.next(0.01)

    if sent == 0:
        assert result is None
        return
    assert result is not None
    events, dropped = result
    assert events == [event("acme", n) for n in range(max(0, sent - capacity), sent)]
    assert dropped == max(0, sent - capacity)


async def test_closing_ends_every_stream_and_unsubscribed_connections_get_nothing() -> None:
    fanout = Fanout()
    gone, staying = fanout.subscribe("acme"), fanout.subscribe("acme")
    fanout.unsubscribe(gone)

    assert fanout.publish(event("acme", 1)) == 1
    fanout.close()

    assert staying.closed
    assert await staying.next(5) == ([event("acme", 1)], 0)
    assert fanout.connections == 1
