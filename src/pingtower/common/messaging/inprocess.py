"""The embedded mode's transport: the same bus contract, inside one process.

Like a RabbitMQ queue, each consumer has its own queue, delivers in batches, redelivers a failing
message up to the delivery limit and then dead-letters it. Messages live in memory, so the
outbox (in the service's database) is what survives a restart, exactly as with RabbitMQ.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from pingtower.common.events import Envelope
from pingtower.common.messaging.bus import (
    BatchHandler,
    Bus,
    JobHandler,
    deliver_batch,
    topic_matches,
)

log = structlog.get_logger(__name__)


@dataclass
class _Consumer:
    name: str
    routing_keys: tuple[str, ...]
    handlers: list[BatchHandler]
    max_batch: int
    queue: asyncio.Queue[tuple[Envelope, int]] = field(default_factory=asyncio.Queue)


class InProcessBus(Bus):
    def __init__(self, *, delivery_limit: int = 5) -> None:
        self.delivery_limit = delivery_limit
        self.dead_letters: list[Envelope] = []
        self._consumers: dict[str, _Consumer] = {}
        self._jobs: dict[str, asyncio.Queue[Envelope]] = {}
        self._job_handlers: list[tuple[str, JobHandler, int]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False

    async def start(self) -> None:
        self._started = True
        for consumer in self._consumers.values():
            for handler in consumer.handlers:
                self._tasks.append(asyncio.create_task(self._run_consumer(consumer, handler)))
        for region, job_handler, concurrency in self._job_handlers:
            for _ in range(concurrency):
                self._tasks.append(asyncio.create_task(self._run_jobs(region, job_handler)))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._started = False

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        for envelope in envelopes:
            for consumer in self._consumers.values():
                if any(topic_matches(key, envelope.type) for key in consumer.routing_keys):
                    consumer.queue.put_nowait((envelope, 1))

    async def publish_job(self, job: Envelope, region: str) -> None:
        self._job_queue(region).put_nowait(job)

    def subscribe(
        self,
        consumer: str,
        routing_keys: Sequence[str],
        handler: BatchHandler,
        *,
        max_batch: int = 100,
    ) -> None:
        existing = self._consumers.get(consumer)
        if existing is None:
            existing = _Consumer(consumer, tuple(routing_keys), [], max_batch)
            self._consumers[consumer] = existing
        existing.handlers.append(handler)
        if self._started:
            self._tasks.append(asyncio.create_task(self._run_consumer(existing, handler)))

    def consume_jobs(self, region: str, handler: JobHandler, *, concurrency: int) -> None:
        self._job_handlers.append((region, handler, concurrency))
        if self._started:
            for _ in range(concurrency):
                self._tasks.append(asyncio.create_task(self._run_jobs(region, handler)))

    async def check(self) -> None:
        return None

    def pending(self, consumer: str) -> int:
        """Messages waiting for `consumer` (tests and progress reports)."""
        found = self._consumers.get(consumer)
        return 0 if found is None else found.queue.qsize()

    def _job_queue(self, region: str) -> asyncio.Queue[Envelope]:
        return self._jobs.setdefault(region, asyncio.Queue())

    async def _run_consumer(self, consumer: _Consumer, handler: BatchHandler) -> None:
        attempts: dict[object, int] = {}

        async def failed(envelope: Envelope, exc: BaseException) -> None:
            count = attempts.pop(envelope.id, 1)
            if count >= self.delivery_limit:
                log.error(
                    "message dead-lettered",
                    consumer=consumer.name,
                    message_id=str(envelope.id),
                    type=envelope.type,
                    error=repr(exc),
                )
                self.dead_letters.append(envelope)
                return
            log.warning(
                "redelivering",
                consumer=consumer.name,
                message_id=str(envelope.id),
                attempt=count,
                error=repr(exc),
            )
            await asyncio.sleep(min(0.05 * 2**count, 2.0))
            consumer.queue.put_nowait((envelope, count + 1))

        while True:
            first = await consumer.queue.get()
            items = [first]
            while len(items) < consumer.max_batch and not consumer.queue.empty():
                items.append(consumer.queue.get_nowait())
            for envelope, count in items:
                attempts[envelope.id] = count
            batch = [envelope for envelope, _ in items]
            await deliver_batch(batch, handler, failed)
            for envelope in batch:
                attempts.pop(envelope.id, None)

    async def _run_jobs(self, region: str, handler: JobHandler) -> None:
        queue = self._job_queue(region)
        while True:
            job = await queue.get()
            try:
                await handler(job)
            except Exception:
                log.exception("check job failed", job_id=str(job.id))
