"""Fan-out of live events to the connected dashboards of one workspace.

Publishing must never wait for a browser: each connection has a bounded queue and, when a slow
client lets it fill, the oldest event is dropped (the newest status is the one that matters) and
the connection is told how many it missed, so the page can reload its figures.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from pingtower.common.waiting import woken


@dataclass(frozen=True)
class LiveEvent:
    tenant: str
    type: str
    data: str
    """The event's JSON, as sent to the browser."""


@dataclass(eq=False)
class Subscription:
    tenant: str
    capacity: int
    queue: deque[LiveEvent] = field(default_factory=deque)
    dropped: int = 0
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False

    def offer(self, event: LiveEvent) -> None:
        if len(self.queue) >= self.capacity:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(event)
        self.wakeup.set()

    async def next(self, keepalive_seconds: float) -> tuple[list[LiveEvent], int] | None:
        """The events waiting and how many were dropped since the last call; None after
        `keepalive_seconds` without any (the caller then sends a keep-alive)."""
        if not self.queue and not self.closed and not await woken(self.wakeup, keepalive_seconds):
            return None
        self.wakeup.clear()
        events, dropped = list(self.queue), self.dropped
        self.queue.clear()
        self.dropped = 0
        return events, dropped


class Fanout:
    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self._subscriptions: set[Subscription] = set()

    def subscribe(self, tenant: str) -> Subscription:
        subscription = Subscription(tenant, self.capacity)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def publish(self, event: LiveEvent) -> int:
        """Queue `event` for every connection of its workspace; returns how many got it."""
        delivered = 0
        for subscription in self._subscriptions:
            if subscription.tenant == event.tenant:
                subscription.offer(event)
                delivered += 1
        return delivered

    def close(self) -> None:
        """Wake every connection so its stream ends (at shutdown)."""
        for subscription in self._subscriptions:
            subscription.closed = True
            subscription.wakeup.set()

    @property
    def connections(self) -> int:
        return len(self._subscriptions)
