"""The distributed mode's transport: the bus contract on RabbitMQ (aio-pika).

Topology (every name starts with the namespace ``<ns>``, default ``pingtower``; all durable):

- ``<ns>.events``: topic exchange. An event is published with its type as the routing key.
- ``<ns>.<consumer>``: one quorum queue per consumer name, bound to ``<ns>.events`` with each of
  the consumer's routing keys (topic patterns). Processes that subscribe with the same consumer
  name compete on that queue; different consumer names each get a copy.
- ``<ns>.jobs``: direct exchange for check jobs, routed by region, to the quorum queue
  ``<ns>.jobs.<region>`` that the probes of the region compete on. A job expires (AMQP
  ``expiration``) at its deadline, so the broker drops a job that waited too long.
- ``<ns>.dlx``: fanout dead-letter exchange, bound to the queue ``<ns>.dead-letters``. Every
  quorum queue above has ``x-delivery-limit``: a message whose handler failed on each of its
  ``delivery_limit`` deliveries is dead-lettered there instead of being retried forever.
  Undecodable messages are rejected straight to it. Expired jobs land there too, which is how
  an operator sees that a region's probes fall behind.

Publishing uses publisher confirms: ``publish`` returns when the broker has taken responsibility
for every message (persistent, on a durable queue), which is what lets the outbox mark rows
sent. Consuming acknowledges a message only after its handler returned, that is after the
consumer's transaction committed; a crash before that means a redelivery, which the consumer's
inbox makes harmless. The acks of the deliveries that finished in one event-loop iteration go out
together, as one `multiple` ack where the finished ones are contiguous
(`common/messaging/acknowledgements.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

import aio_pika
import aiormq
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from prometheus_client import Counter
from pydantic import ValidationError

from pingtower.common.events import Envelope, utcnow
from pingtower.common.messaging.acknowledgements import AckLedger
from pingtower.common.messaging.batch_publish import Outgoing, publish_together
from pingtower.common.messaging.bus import (
    BatchHandler,
    Bus,
    JobHandler,
    UnpublishedJob,
    deliver_batch,
)
from pingtower.common.messaging.coalescing import CoalescingRobustConnection

log = structlog.get_logger(__name__)
T = TypeVar("T")

PUBLISHED = Counter("pingtower_bus_published_total", "Messages confirmed by the broker", ["kind"])
CONSUMED = Counter(
    "pingtower_bus_consumed_total", "Messages handled and acknowledged", ["consumer"]
)
REDELIVERED = Counter(
    "pingtower_bus_redelivered_total",
    "Messages received again after a failed or interrupted delivery",
    ["consumer"],
)
FAILED = Counter(
    "pingtower_bus_failed_total",
    "Deliveries whose handler raised (returned to the queue) or whose body was undecodable",
    ["consumer"],
)

PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)
# How long a consumer waits for more already-delivered messages to fill a batch: enough to
# gather a burst, too short to add visible latency.
BATCH_LINGER_SECONDS = 0.005
# How long close() lets in-flight handlers finish before it cancels them.
CLOSE_GRACE_SECONDS = 10.0
# Publishes awaiting their confirmation at once in publish_jobs: enough to hide the round trip,
# few enough that a tick of 50,000 jobs does not hold 50,000 futures and frames in memory.
MAX_JOBS_IN_FLIGHT = 1000
# How long a delivery that finished above one still running waits to be covered by a multiple
# ack before it is acknowledged on its own: short, since it holds a prefetch slot meanwhile.
ACK_HOLD_SECONDS = 0.05
# ... and how many such deliveries, as a share of the prefetch, may wait at once.
ACK_HOLD_SHARE = 8


class PublishFailedError(RuntimeError):
    """The broker refused (nack) or could not route (return) a message, or the channel closed
    before it confirmed it."""


# A delivered message and the acks of the channel it came on.
_Delivery = tuple[AbstractIncomingMessage, "_ChannelAcks | None"]


@dataclass
class _Subscription:
    consumer: str
    routing_keys: tuple[str, ...]
    handler: BatchHandler
    max_batch: int
    broadcast: bool = False
    buffer: asyncio.Queue[_Delivery] = field(default_factory=asyncio.Queue)
    queue: AbstractQueue | None = None
    consumer_tag: str | None = None
    worker: asyncio.Task[None] | None = None
    handling: bool = False
    acks: _ChannelAcks | None = None


@dataclass
class _JobConsumer:
    region: str
    handler: JobHandler
    concurrency: int
    queue: AbstractQueue | None = None
    consumer_tag: str | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    consumed: Counter = field(init=False)  # its label resolved once, not per job
    acks: _ChannelAcks | None = None

    def __post_init__(self) -> None:
        self.consumed = CONSUMED.labels(f"jobs.{self.region}")


class _ChannelAcks:
    """Sends the acks of one channel's deliveries: those that finished during an event-loop
    iteration go out at its end, as few frames as the ledger allows."""

    def __init__(
        self, channel: aiormq.abc.AbstractChannel, *, prefetch: int, consumer: str
    ) -> None:
        self.channel = channel
        self.consumer = consumer
        self.ledger = AckLedger(hold_limit=prefetch // ACK_HOLD_SHARE)
        self._loop = asyncio.get_running_loop()
        self._flush_scheduled = False
        self._hold_timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._abandoned = False

    @classmethod
    def of(
        cls,
        current: _ChannelAcks | None,
        message: AbstractIncomingMessage,
        *,
        prefetch: int,
        consumer: str,
    ) -> _ChannelAcks | None:
        """The acks of the channel that delivered `message` (a new one after a reconnect:
        tags start again from 1); None if that channel is already closed."""
        try:
            channel = message.channel
        except aiormq.exceptions.ChannelInvalidStateError:
            return None  # the broker has returned the message to its queue
        if current is not None and current.channel is channel:
            return current
        if current is not None:
            current.abandon()
        return cls(channel, prefetch=prefetch, consumer=consumer)

    def delivered(self, tag: int) -> None:
        self.ledger.delivered(tag)

    def settled(self, tag: int) -> None:
        """Its nack or reject was sent on its own."""
        self.ledger.settled(tag)
        self._schedule()  # it may have been the one holding back the finished above it

    def finished(self, tag: int) -> None:
        self.ledger.finished(tag)
        self._schedule()

    def _schedule(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self, force: bool = False) -> None:
        self._flush_scheduled = False
        if self._abandoned:
            return
        if force:
            self._hold_timer = None
        acks = self.ledger.take(force=force)
        if acks:
            task = asyncio.create_task(self._send([(a.tag, a.multiple) for a in acks]))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        if self.ledger.held and self._hold_timer is None:
            self._hold_timer = self._loop.call_later(ACK_HOLD_SECONDS, self._flush, True)

    async def _send(self, acks: list[tuple[int, bool]]) -> None:
        try:
            last = len(acks) - 1
            for index, (tag, multiple) in enumerate(acks):
                # Queued for aiormq's writer; only the last waits for it to be written (all
                # leave in one write: coalescing.py).
                await self.channel.basic_ack(tag, multiple=multiple, wait=index == last)
        except Exception as exc:
            # The channel died (broker restart): the broker has returned these messages to
            # their queue already.
            log.warning("could not acknowledge", consumer=self.consumer, error=repr(exc))

    async def drain(self) -> None:
        """Send every ack still held and wait until they are written."""
        if self._hold_timer is not None:
            self._hold_timer.cancel()
        self._flush(force=True)
        await asyncio.gather(*self._sending, return_exceptions=True)

    def abandon(self) -> None:
        """Its channel is gone, and the unacknowledged deliveries with it."""
        self._abandoned = True
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None


class RabbitMQBus(Bus):
    def __init__(
        self,
        url: str,
        *,
        namespace: str = "pingtower",
        delivery_limit: int = 5,
        prefetch: int = 64,
    ) -> None:
        self.url = url
        self.namespace = namespace
        if delivery_limit < 1:
            raise ValueError("delivery_limit must be at least 1")
        self.delivery_limit = delivery_limit
        self.prefetch = prefetch
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._events: AbstractExchange | None = None
        self._jobs: AbstractExchange | None = None
        self._job_queues_declared: set[str] = set()
        self._subscriptions: list[_Subscription] = []
        self._job_consumers: list[_JobConsumer] = []
        self._pending_starts: set[asyncio.Task[None]] = set()
        self._delayed_nacks: set[asyncio.Task[None]] = set()
        self._started = False
        self._closing = False

    # --- names ----------------------------------------------------------------------------

    @property
    def events_exchange(self) -> str:
        return f"{self.namespace}.events"

    @property
    def jobs_exchange(self) -> str:
        return f"{self.namespace}.jobs"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.namespace}.dlx"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.namespace}.dead-letters"

    def queue_name(self, consumer: str) -> str:
        return f"{self.namespace}.{consumer}"

    def job_queue_name(self, region: str) -> str:
        return f"{self.namespace}.jobs.{region}"

    @property
    def declared_queues(self) -> list[str]:
        """Every queue this bus declares (operators' scripts and test clean-up use it)."""
        names = {self.dead_letter_queue}
        names.update(self.queue_name(s.consumer) for s in self._subscriptions)
        names.update(self.job_queue_name(j.region) for j in self._job_consumers)
        names.update(self.job_queue_name(region) for region in self._job_queues_declared)
        return sorted(names)

    def _quorum_arguments(self) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            # The broker's limit counts returns, not deliveries: it dead-letters a message when
            # it comes back a (limit + 1)th time. Our delivery_limit, like the in-process bus's
            # and the setting's, is the number of deliveries, so the broker gets one less.
            "x-delivery-limit": self.delivery_limit - 1,
            "x-dead-letter-exchange": self.dead_letter_exchange,
        }

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        # connect_robust reconnects after a broker restart and then re-declares the exchanges
        # and queues and re-opens the consumers of the channels it restores.
        self._connection = await aio_pika.connect_robust(
            self.url, connection_class=CoalescingRobustConnection
        )
        self._closing = False
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        self._publish_channel = channel
        self._events = await channel.declare_exchange(
            self.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        self._jobs = await channel.declare_exchange(
            self.jobs_exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        dlx = await channel.declare_exchange(
            self.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True
        )
        dead_letters = await channel.declare_queue(self.dead_letter_queue, durable=True)
        await dead_letters.bind(dlx)
        self._started = True
        for subscription in self._subscriptions:
            await self._start_subscription(subscription)
        for job_consumer in self._job_consumers:
            await self._start_job_consumer(job_consumer)
        log.info("bus connected", transport="rabbitmq", namespace=self.namespace)

    async def close(self) -> None:
        self._closing = True
        for task in self._pending_starts:
            task.cancel()
        await asyncio.gather(*self._pending_starts, return_exceptions=True)
        # Stop the deliveries first, so nothing new arrives while the in-flight work finishes.
        for subscription in self._subscriptions:
            await self._cancel_consumer(subscription.queue, subscription.consumer_tag)
            subscription.consumer_tag = None
        for job_consumer in self._job_consumers:
            await self._cancel_consumer(job_consumer.queue, job_consumer.consumer_tag)
            job_consumer.consumer_tag = None
        await self._finish_in_flight()
        # A failed message waiting for its delayed nack is returned now: closing the connection
        # would return it anyway, but an explicit nack counts towards its delivery limit.
        for task in self._delayed_nacks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._delayed_nacks, return_exceptions=True)
        for subscription in self._subscriptions:
            if subscription.acks is not None:
                await subscription.acks.drain()
                subscription.acks = None
        for job_consumer in self._job_consumers:
            if job_consumer.acks is not None:
                await job_consumer.acks.drain()
                job_consumer.acks = None
        if self._connection is not None:
            await self._connection.close()
        self._connection = None
        self._publish_channel = None
        self._events = None
        self._jobs = None
        self._started = False
        log.info("bus closed", transport="rabbitmq", namespace=self.namespace)

    async def _finish_in_flight(self) -> None:
        waiting: list[asyncio.Task[None]] = []
        for subscription in self._subscriptions:
            worker = subscription.worker
            if worker is None:
                continue
            if subscription.handling:
                waiting.append(worker)  # it exits after this batch: it sees _closing
            else:
                worker.cancel()  # idle: waiting for a message that will not come
                waiting.append(worker)
        for job_consumer in self._job_consumers:
            waiting.extend(job_consumer.tasks)
        if not waiting:
            return
        _done, late = await asyncio.wait(waiting, timeout=CLOSE_GRACE_SECONDS)
        for task in late:
            log.warning("handler still running at close; cancelling it")
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        for subscription in self._subscriptions:
            subscription.worker = None

    async def check(self) -> None:
        connection = self._connection
        if connection is None or connection.is_closed or not connection.connected.is_set():
            raise ConnectionError("not connected to RabbitMQ")

    # --- publishing -----------------------------------------------------------------------

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        if not envelopes:
            return
        exchange = self._require(self._events).name
        # Encoded and sent as one batch whose confirmations are awaited together
        # (batch_publish.py), in order. Not mandatory: an event that no consumer binds (yet)
        # is not an error.
        outgoing = [
            Outgoing(
                envelope.to_bytes(),
                envelope.type,
                aiormq.spec.Basic.Properties(
                    content_type="application/json",
                    delivery_mode=PERSISTENT,
                    message_id=str(envelope.id),
                    message_type=envelope.type,
                ),
            )
            for envelope in envelopes
        ]
        try:
            results = await publish_together(await self._publishing_channel(), exchange, outgoing)
        except Exception as exc:  # closed or closing: the caller retries, as for a nack
            raise PublishFailedError(f"{len(envelopes)} events not published: {exc!r}") from exc
        failures = [
            (envelope, result)
            for envelope, result in zip(envelopes, results, strict=True)
            if result is not None
        ]
        PUBLISHED.labels("event").inc(len(envelopes) - len(failures))
        if failures:
            envelope, error = failures[0]
            raise PublishFailedError(
                f"{len(failures)} of {len(envelopes)} events not confirmed "
                f"(first: {envelope.type} {envelope.id}: {error!r})"
            ) from error

    async def _publishing_channel(self) -> aiormq.Channel:
        channel = self._require(self._publish_channel)
        if channel.is_closed:
            raise aiormq.exceptions.ChannelInvalidStateError("the publishing channel is closed")
        # While reconnecting this waits for the connection, as aio-pika's publish does; the
        # concrete aiormq channel, as aio-pika's robust channel also takes it.
        return cast(aiormq.Channel, await channel.get_underlay_channel())

    async def publish_job(self, job: Envelope, region: str) -> None:
        exchange = self._require(self._jobs)
        # Declared on first use, so jobs wait for a probe that is starting instead of vanishing.
        if region not in self._job_queues_declared:
            await self._declare_job_queue(region)
        try:
            await self._publish_job(exchange, job, region)
        except Exception as exc:
            raise PublishFailedError(f"job {job.id} for region {region} not confirmed") from exc
        PUBLISHED.labels("job").inc()

    async def publish_jobs(self, jobs: Sequence[tuple[Envelope, str]]) -> list[UnpublishedJob]:
        exchange = self._require(self._jobs)
        unpublished: list[UnpublishedJob] = []
        undeclared: dict[str, BaseException] = {}
        for region in dict.fromkeys(region for _job, region in jobs):
            if region not in self._job_queues_declared:
                try:
                    await self._declare_job_queue(region)
                except Exception as exc:
                    undeclared[region] = exc
        ready = [(job, region) for job, region in jobs if region not in undeclared]
        unpublished.extend(
            UnpublishedJob(job, region, undeclared[region])
            for job, region in jobs
            if region in undeclared
        )
        # A publish on a confirming channel returns when its confirmation arrives; started
        # together, a chunk costs about one round trip instead of one per job.
        for start in range(0, len(ready), MAX_JOBS_IN_FLIGHT):
            chunk = ready[start : start + MAX_JOBS_IN_FLIGHT]
            results = await asyncio.gather(
                *(self._publish_job(exchange, job, region) for job, region in chunk),
                return_exceptions=True,
            )
            unpublished.extend(
                UnpublishedJob(job, region, result)
                for (job, region), result in zip(chunk, results, strict=True)
                if isinstance(result, BaseException)
            )
        PUBLISHED.labels("job").inc(len(jobs) - len(unpublished))
        return unpublished

    async def _publish_job(self, exchange: AbstractExchange, job: Envelope, region: str) -> None:
        # Read straight from the payload: validating the whole CheckJob again for one field
        # was a measurable share of the scheduler's CPU per job.
        raw = job.payload["deadline"]
        deadline = raw if isinstance(raw, datetime) else datetime.fromisoformat(raw)
        remaining_ms = int((deadline - utcnow()).total_seconds() * 1000)
        # The broker drops the job once its deadline passed; 0 would mean "deliver now or
        # never", and the probe checks the deadline itself anyway.
        expiration = timedelta(milliseconds=max(1, remaining_ms))
        await exchange.publish(self._message(job, expiration=expiration), region)

    @staticmethod
    def _message(envelope: Envelope, *, expiration: timedelta | None = None) -> aio_pika.Message:
        return aio_pika.Message(
            envelope.to_bytes(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(envelope.id),
            type=envelope.type,
            expiration=expiration,
        )

    async def _declare_job_queue(self, region: str) -> None:
        channel = self._require(self._publish_channel)
        queue = await channel.declare_queue(
            self.job_queue_name(region), durable=True, arguments=self._quorum_arguments()
        )
        await queue.bind(self._require(self._jobs), region)
        self._job_queues_declared.add(region)

    # --- consuming events -----------------------------------------------------------------

    def subscribe(
        self,
        consumer: str,
        routing_keys: Sequence[str],
        handler: BatchHandler,
        *,
        max_batch: int = 100,
        broadcast: bool = False,
    ) -> None:
        subscription = _Subscription(
            consumer, tuple(routing_keys), handler, max(1, max_batch), broadcast
        )
        self._subscriptions.append(subscription)
        if self._started:
            self._spawn_start(self._start_subscription(subscription))

    async def _start_subscription(self, subscription: _Subscription) -> None:
        connection = self._require(self._connection)
        # Messages left from before a close belong to a dead channel: the broker has already
        # put them back in the queue.
        subscription.buffer = asyncio.Queue()
        channel = await connection.channel()
        # Enough unacknowledged messages in hand to fill a batch.
        prefetch = max(self.prefetch, subscription.max_batch)
        await channel.set_qos(prefetch_count=prefetch)
        events = await channel.declare_exchange(
            self.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        if subscription.broadcast:
            # This process's own copy of the events: a server-named queue that lives and dies
            # with the connection (live views; nothing to redeliver after a restart).
            queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        else:
            queue = await channel.declare_queue(
                self.queue_name(subscription.consumer),
                durable=True,
                arguments=self._quorum_arguments(),
            )
        for key in subscription.routing_keys:
            await queue.bind(events, key)
        subscription.queue = queue
        subscription.worker = asyncio.create_task(
            self._run_subscription(subscription), name=f"bus-consumer-{subscription.consumer}"
        )

        async def on_message(message: AbstractIncomingMessage) -> None:
            acks = subscription.acks = _ChannelAcks.of(
                subscription.acks, message, prefetch=prefetch, consumer=subscription.consumer
            )
            if acks is not None:
                acks.delivered(message.delivery_tag or 0)
            subscription.buffer.put_nowait((message, acks))

        subscription.consumer_tag = await queue.consume(on_message, no_ack=False)
        log.info(
            "consuming",
            queue=queue.name,
            routing_keys=list(subscription.routing_keys),
            max_batch=subscription.max_batch,
        )

    async def _run_subscription(self, subscription: _Subscription) -> None:
        while not self._closing:
            messages = await self._next_batch(subscription)
            subscription.handling = True
            try:
                await self._handle_batch(subscription, messages)
            except Exception:
                # Handler errors are dealt with per message; this is a bug of ours. The
                # unacknowledged messages come back when the channel closes; keep consuming.
                log.exception("consumer loop error", consumer=subscription.consumer)
            finally:
                subscription.handling = False

    async def _next_batch(self, subscription: _Subscription) -> list[_Delivery]:
        buffer = subscription.buffer
        messages = [await buffer.get()]
        loop = asyncio.get_running_loop()
        linger_until = loop.time() + BATCH_LINGER_SECONDS
        while len(messages) < subscription.max_batch:
            if not buffer.empty():
                messages.append(buffer.get_nowait())
                continue
            remaining = linger_until - loop.time()
            if remaining <= 0:
                break
            try:
                messages.append(await asyncio.wait_for(buffer.get(), remaining))
            except TimeoutError:
                break
        return messages

    async def _handle_batch(self, subscription: _Subscription, deliveries: list[_Delivery]) -> None:
        consumer = subscription.consumer
        pairs: list[tuple[Envelope, _Delivery]] = []
        for delivery in deliveries:
            message, acks = delivery
            if message.redelivered:
                REDELIVERED.labels(consumer).inc()
            envelope = await self._decode(consumer, message, acks)
            if envelope is not None:
                pairs.append((envelope, delivery))
        if not pairs:
            return
        failed: list[AbstractIncomingMessage] = []

        async def on_failure(envelope: Envelope, exc: BaseException) -> None:
            # Identity, not equality: the same envelope may legitimately arrive twice.
            message, acks = next(d for e, d in pairs if e is envelope)
            failed.append(message)
            self._return_later(consumer, envelope, message, acks, exc)

        await deliver_batch([envelope for envelope, _ in pairs], subscription.handler, on_failure)
        acknowledged = 0
        for _envelope, (message, acks) in pairs:
            if any(message is f for f in failed):
                continue
            if acks is not None:
                acks.finished(message.delivery_tag or 0)
            acknowledged += 1
        CONSUMED.labels(consumer).inc(acknowledged)

    async def _decode(
        self, consumer: str, message: AbstractIncomingMessage, acks: _ChannelAcks | None
    ) -> Envelope | None:
        try:
            return Envelope.from_bytes(message.body)
        except ValidationError as exc:
            FAILED.labels(consumer).inc()
            log.error(
                "undecodable message dead-lettered",
                consumer=consumer,
                message_id=message.message_id,
                routing_key=message.routing_key,
                error=str(exc).splitlines()[0],
            )
            await self._settle(message.reject(requeue=False), consumer)
            if acks is not None:
                acks.settled(message.delivery_tag or 0)
            return None

    def _return_later(
        self,
        consumer: str,
        envelope: Envelope,
        message: AbstractIncomingMessage,
        acks: _ChannelAcks | None,
        exc: BaseException,
    ) -> None:
        """Give a failed message back to the queue after a short back-off.

        The quorum queue counts the returns and dead-letters the message at the delivery limit;
        the back-off keeps a consumer whose database is briefly away from burning through the
        limit in a few milliseconds.
        """
        FAILED.labels(consumer).inc()
        deliveries = _delivery_count(message)
        log.warning(
            "handler failed; message returned to the queue",
            consumer=consumer,
            message_id=str(envelope.id),
            type=envelope.type,
            delivery=deliveries + 1,
            delivery_limit=self.delivery_limit,
            error=repr(exc),
        )
        delay = min(0.05 * 2**deliveries, 2.0)

        async def nack() -> None:
            try:
                await asyncio.sleep(delay)
            finally:
                await self._settle(message.nack(requeue=True), consumer)
                if acks is not None:
                    acks.settled(message.delivery_tag or 0)

        task = asyncio.create_task(nack())
        self._delayed_nacks.add(task)
        task.add_done_callback(self._delayed_nacks.discard)

    # --- consuming jobs -------------------------------------------------------------------

    def consume_jobs(self, region: str, handler: JobHandler, *, concurrency: int) -> None:
        job_consumer = _JobConsumer(region, handler, max(1, concurrency))
        self._job_consumers.append(job_consumer)
        if self._started:
            self._spawn_start(self._start_job_consumer(job_consumer))

    async def _start_job_consumer(self, job_consumer: _JobConsumer) -> None:
        connection = self._require(self._connection)
        channel = await connection.channel()
        # The prefetch is the concurrency: the broker hands out no more jobs than run at once,
        # so the other probes of the region get the rest.
        prefetch = job_consumer.concurrency
        await channel.set_qos(prefetch_count=prefetch)
        jobs = await channel.declare_exchange(
            self.jobs_exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        queue = await channel.declare_queue(
            self.job_queue_name(job_consumer.region),
            durable=True,
            arguments=self._quorum_arguments(),
        )
        await queue.bind(jobs, job_consumer.region)
        job_consumer.queue = queue
        consumer = f"jobs.{job_consumer.region}"
        redelivered = REDELIVERED.labels(consumer)  # resolved once, not per job

        async def on_message(message: AbstractIncomingMessage) -> None:
            # aio-pika already runs each delivery in a task of its own: the job runs here
            # rather than in one more task per job. Tracked so that close() waits for it.
            task = asyncio.current_task()
            if task is not None:
                job_consumer.tasks.add(task)
            acks = job_consumer.acks = _ChannelAcks.of(
                job_consumer.acks, message, prefetch=prefetch, consumer=consumer
            )
            if acks is not None:
                acks.delivered(message.delivery_tag or 0)
            try:
                if message.redelivered:
                    redelivered.inc()
                await self._run_job(job_consumer, consumer, message, acks)
            finally:
                if task is not None:
                    job_consumer.tasks.discard(task)

        job_consumer.consumer_tag = await queue.consume(on_message, no_ack=False)
        log.info("consuming jobs", queue=queue.name, concurrency=job_consumer.concurrency)

    async def _run_job(
        self,
        job_consumer: _JobConsumer,
        consumer: str,
        message: AbstractIncomingMessage,
        acks: _ChannelAcks | None,
    ) -> None:
        job = await self._decode(consumer, message, acks)
        if job is None:
            return
        try:
            await job_consumer.handler(job)
        except Exception as exc:
            FAILED.labels(consumer).inc()
            log.warning(
                "check job failed; returned to the queue",
                job_id=str(job.id),
                region=job_consumer.region,
                delivery=_delivery_count(message) + 1,
                error=repr(exc),
            )
            await self._settle(message.nack(requeue=True), consumer)
            if acks is not None:
                acks.settled(message.delivery_tag or 0)
            return
        if acks is not None:
            acks.finished(message.delivery_tag or 0)
        job_consumer.consumed.inc()

    # --- helpers --------------------------------------------------------------------------

    def _spawn_start(self, starting: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.create_task(starting)
        self._pending_starts.add(task)
        task.add_done_callback(self._pending_starts.discard)

    @staticmethod
    async def _cancel_consumer(queue: AbstractQueue | None, tag: str | None) -> None:
        if queue is None or tag is None:
            return
        try:
            await queue.cancel(tag)
        except Exception as exc:  # the channel may already be gone; the broker cleans up
            log.warning("could not cancel consumer", queue=queue.name, error=repr(exc))

    @staticmethod
    async def _settle(settling: Awaitable[Any], consumer: str) -> None:
        """Ack, nack or reject; if the channel died meanwhile (broker restart), the broker has
        already returned the message to the queue, so there is nothing left to do."""
        try:
            await settling
        except Exception as exc:
            log.warning("could not settle message", consumer=consumer, error=repr(exc))

    def _require(self, value: T | None) -> T:
        if value is None or not self._started:
            raise ConnectionError("the RabbitMQ bus is not started")
        return value


def _delivery_count(message: AbstractIncomingMessage) -> int:
    """Earlier deliveries of this message, as counted by the quorum queue."""
    count = (message.headers or {}).get("x-delivery-count", 0)
    return count if isinstance(count, int) else 0
