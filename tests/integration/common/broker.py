"""A test's view of the real RabbitMQ: buses in the test's namespace, queue inspection, clean-up."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection

from pingtower.common.messaging.packing import MAX_PACKED_EVENTS
from pingtower.common.messaging.rabbitmq import RabbitMQBus


class Broker:
    def __init__(self, url: str, namespace: str) -> None:
        self.url = url
        self.namespace = namespace
        self.buses: list[RabbitMQBus] = []
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None

    def bus(
        self,
        *,
        delivery_limit: int = 5,
        prefetch: int = 64,
        url: str | None = None,
        max_packed_events: int = MAX_PACKED_EVENTS,
    ) -> RabbitMQBus:
        bus = RabbitMQBus(
            url or self.url,
            namespace=self.namespace,
            delivery_limit=delivery_limit,
            prefetch=prefetch,
            max_packed_events=max_packed_events,
        )
        self.buses.append(bus)
        return bus

    async def channel(self) -> AbstractChannel:
        """A plain channel of the test's own (to look at queues without consuming)."""
        if self._channel is None or self._channel.is_closed:
            if self._connection is None or self._connection.is_closed:
                self._connection = await aio_pika.connect(self.url)
            self._channel = await self._connection.channel()
        return self._channel

    async def ready_count(self, queue: str) -> int:
        """Messages ready in `queue` (passive declare: the queue must exist)."""
        declared = await (await self.channel()).declare_queue(queue, passive=True)
        count = declared.declaration_result.message_count
        assert count is not None
        return count

    async def take_all(self, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """Remove and return every ready message of `queue`."""
        declared = await (await self.channel()).declare_queue(queue, passive=True)
        taken = []
        for _ in range(10_000):
            message = await declared.get(no_ack=True, fail=False)
            if message is None:
                break
            taken.append(message)
        return taken

    async def clean_up(self) -> None:
        queues: set[str] = set()
        for bus in self.buses:
            queues.update(bus.declared_queues)
            await bus.close()
        channel = await self.channel()
        for queue in sorted(queues):
            await channel.queue_delete(queue)
        for suffix in ("events", "jobs", "dlx"):
            await channel.exchange_delete(f"{self.namespace}.{suffix}")
        assert self._connection is not None
        await self._connection.close()
