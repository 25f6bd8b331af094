"""The distributed mode's transport: the bus contract on RabbitMQ (aio-pika).

Topology (every name starts with the namespace ``<ns>``, default ``pingtower``; all durable):

- ``<ns>.events``: topic exchange. An event is published with its type as the routing key.
- ``<ns>.<consumer>``: one quorum queue per consumer name, bound to ``<ns>.events`` with each of
  the consumer's routing keys (topic patterns). Processes that subscribe with the same consumer
  name compete on that queue; different consumer names each get a copy.
- ``<ns>.jobs``: direct exchange for check jobs, routed by region, to the quorum queue
  ``<ns>.jobs.<region>`` that the probes of the region compete on. A message of jobs expires
  (AMQP ``expiration``) at its latest job's deadline, so the broker drops a job that waited too
  long, and the probe drops the stale ones of a pack that is still valid.
- ``<ns>.dlx``: fanout dead-letter exchange, bound to the queue ``<ns>.dead-letters``. Every
  quorum queue above has ``x-delivery-limit``: a message whose handler failed on each of its
  ``delivery_limit`` deliveries is dead-lettered there instead of being retried forever.
  Undecodable messages are rejected straight to it. Expired jobs land there too, which is how
  an operator sees that a region's probes fall behind.

Events that follow one another in a ``publish`` call with the same routing key travel as one
AMQP message (``application/vnd.pingtower.events+json``, a JSON array of envelopes;
``packing.py``); a lone event is one envelope as ``application/json``. A consumer unpacks such a
message, hands its envelopes to the handler like any others, and acknowledges it once every one
was handled. Envelopes of it that failed are published again alone to that consumer's queue,
carrying the pack's deliveries so far, and the pack is then acknowledged; if that cannot be done,
the pack is returned whole (the inbox skips the envelopes already handled). Consumers must read
packed messages before any producer sends them: upgrade consumers first.

Check jobs published together travel packed too, up to ``MAX_PACKED_JOBS`` of one region in a
message (``packing.job_packs_of``); a lone job, or one already stale, goes alone. The job
consumer unpacks them and hands them to the handler one by one, at most ``concurrency`` at a
time; unlike an event, a message of jobs is acknowledged when its first job starts, not when its
last one ends (see `_start`), and its jobs that fail are published again alone.

Publishing uses publisher confirms: ``publish`` returns when the broker has taken responsibility
for every message (persistent, on a durable queue), which is what lets the outbox mark rows
sent. Consuming events acknowledges a message only after its handler returned, that is after the
consumer's transaction committed; a crash before that means a redelivery, which the consumer's
inbox makes harmless. The acks of the deliveries that finished in one event-loop iteration go out
together, as one `multiple` ack where the finished ones are contiguous
(`common/messaging/acknowledgements.py`). Check jobs are consumed on aiormq's channel directly
(no aio-pika message object and task per job); the bus registers that consumer again after a
reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
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
from aiormq.abc import DeliveredMessage
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
from pingtower.common.messaging.packing import (
    COUNT_HEADER,
    MAX_PACKED_EVENTS,
    MAX_PACKED_JOBS,
    PACKED_CONTENT_TYPE,
    SINGLE_CONTENT_TYPE,
    JobPack,
    Pack,
    UnpackError,
    deadline_of,
    declared_count,
    is_packed,
    job_packs_of,
    packs_of,
    unpack,
)

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
# On an event taken out of a packed message and published again alone: the deliveries of the
# pack so far (the queue counts only the new message's), and the queue it was returned to.
EARLIER_DELIVERIES_HEADER = "x-pingtower-earlier-deliveries"
RETURNED_TO_HEADER = "x-pingtower-returned-to"
# How long a consumer waits for more already-delivered messages to fill a batch: enough to
# gather a burst, too short to add visible latency.
BATCH_LINGER_SECONDS = 0.005
# How long close() lets in-flight handlers finish before it cancels them.
CLOSE_GRACE_SECONDS = 10.0
# Messages awaiting their confirmation at once in publish_jobs: enough to hide the round trip,
# few enough that a huge tick does not hold a future and frames per message in memory at once.
MAX_JOB_MESSAGES_IN_FLIGHT = 1000
# A job consumer's prefetch (in messages, packs or lone jobs, none of whose jobs started yet)
# is about this share of its concurrency in full packs: enough to keep its handlers fed across
# a round trip to the broker, few enough that a probe does not sit on jobs that another probe
# of the region could run now.
JOBS_WAITING_SHARE = 4
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
    # Delivered jobs not started yet, in delivery order, each with the message it came in.
    waiting: deque[tuple[Envelope, _JobMessage]] = field(default_factory=deque)
    # Tasks taking jobs from `waiting` (counted from the moment one is decided on, so that two
    # deliveries in one loop iteration do not start more than `concurrency`).
    working: int = 0

    def __post_init__(self) -> None:
        self.consumed = CONSUMED.labels(f"jobs.{self.region}")


@dataclass(slots=True)
class _JobMessage:
    """A delivered message of check jobs (a pack, or one job alone) while its jobs wait."""

    channel: aiormq.abc.AbstractChannel
    tag: int
    acks: _ChannelAcks | None
    deliveries: int  # earlier deliveries of its jobs, for the delivery limit
    started: bool = False  # a job of it started: it is acknowledged


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
        return cls.on(current, channel, prefetch=prefetch, consumer=consumer)

    @classmethod
    def on(
        cls,
        current: _ChannelAcks | None,
        channel: aiormq.abc.AbstractChannel,
        *,
        prefetch: int,
        consumer: str,
    ) -> _ChannelAcks | None:
        """The acks of `channel`; None if it is already closed."""
        if channel.is_closed:
            return None  # the broker has returned its deliveries to their queue
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
        max_packed_events: int = MAX_PACKED_EVENTS,
        max_packed_jobs: int = MAX_PACKED_JOBS,
    ) -> None:
        self.url = url
        self.namespace = namespace
        if delivery_limit < 1:
            raise ValueError("delivery_limit must be at least 1")
        self.delivery_limit = delivery_limit
        self.prefetch = prefetch
        # Events of one routing key sent in one message at most (1: each event alone, the
        # framing of consumers older than packing.py).
        self.max_packed_events = max(1, max_packed_events)
        # Jobs of one region sent in one message at most (1: each job alone).
        self.max_packed_jobs = max(1, max_packed_jobs)
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._events: AbstractExchange | None = None
        self._jobs: AbstractExchange | None = None
        self._dead_letters: AbstractExchange | None = None
        self._job_queues_declared: set[str] = set()
        self._subscriptions: list[_Subscription] = []
        self._job_consumers: list[_JobConsumer] = []
        self._pending_starts: set[asyncio.Task[None]] = set()
        self._delayed_nacks: set[asyncio.Task[None]] = set()
        # Jobs waiting for their back-off before they are published again, and those being
        # published again (`_give_back`).
        self._held_back: dict[object, tuple[asyncio.TimerHandle, Callable[[], None]]] = {}
        self._returning: set[asyncio.Task[None]] = set()
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
        self._dead_letters = dlx
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
        for job_consumer in self._job_consumers:
            # Jobs of an acknowledged message that did not start go back to the queue for
            # another probe; those of a message none of whose jobs started come back with it
            # when the channel closes.
            left = [(job, held) for job, held in job_consumer.waiting if held.started]
            job_consumer.waiting.clear()
            if left:
                self._give_back(job_consumer, left, 0.0)
        for timer, send in list(self._held_back.values()):
            timer.cancel()
            send()
        await asyncio.gather(*self._returning, return_exceptions=True)
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
        self._dead_letters = None
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
        # Consecutive events of one routing key travel as one message (packing.py); the
        # messages are encoded and sent as one batch whose confirmations are awaited together
        # (batch_publish.py), in order. Not mandatory: an event that no consumer binds (yet)
        # is not an error.
        packs = packs_of(envelopes, max_events=self.max_packed_events)
        outgoing = [Outgoing(pack.body(), pack.routing_key, _properties(pack)) for pack in packs]
        try:
            results = await publish_together(await self._publishing_channel(), exchange, outgoing)
        except Exception as exc:  # closed or closing: the caller retries, as for a nack
            raise PublishFailedError(f"{len(envelopes)} events not published: {exc!r}") from exc
        failures = [
            (pack, result)
            for pack, result in zip(packs, results, strict=True)
            if result is not None
        ]
        unconfirmed = sum(len(pack.envelopes) for pack, _ in failures)
        PUBLISHED.labels("event").inc(len(envelopes) - unconfirmed)
        if failures:
            pack, error = failures[0]
            first = pack.envelopes[0]
            raise PublishFailedError(
                f"{unconfirmed} of {len(envelopes)} events not confirmed "
                f"(first: {first.type} {first.id}: {error!r})"
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
        [alone] = job_packs_of([(job, region)], now=utcnow(), max_jobs=1)
        try:
            await self._publish_jobs_message(exchange, alone)
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
        # The jobs of a region travel in packs (packing.py); a pack the broker did not take
        # is every one of its jobs unpublished, for the caller to retry or count.
        packs = job_packs_of(ready, now=utcnow(), max_jobs=self.max_packed_jobs)
        # A publish on a confirming channel returns when its confirmation arrives; started
        # together, a chunk costs about one round trip instead of one per message.
        for start in range(0, len(packs), MAX_JOB_MESSAGES_IN_FLIGHT):
            chunk = packs[start : start + MAX_JOB_MESSAGES_IN_FLIGHT]
            results = await asyncio.gather(
                *(self._publish_jobs_message(exchange, pack) for pack in chunk),
                return_exceptions=True,
            )
            for pack, result in zip(chunk, results, strict=True):
                if isinstance(result, BaseException):
                    unpublished.extend(
                        UnpublishedJob(job, pack.routing_key, result) for job in pack.envelopes
                    )
        PUBLISHED.labels("job").inc(len(jobs) - len(unpublished))
        return unpublished

    async def _publish_jobs_message(self, exchange: AbstractExchange, pack: JobPack) -> None:
        assert pack.deadline is not None  # a pack holds at least one job
        # The broker drops the message once its last job's deadline passed; 0 would mean
        # "deliver now or never", and the probe checks each job's deadline itself anyway.
        expiration = _expiration(pack.deadline)
        first = pack.envelopes[0]
        message = aio_pika.Message(
            pack.body(),
            content_type=PACKED_CONTENT_TYPE if pack.packed else SINGLE_CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            # A pack's first job's id: what a log line or the dead-letter queue shows for it
            # (and, unique, what a broker's return of the message is matched by).
            message_id=str(first.id),
            type=first.type,
            expiration=expiration,
            headers={COUNT_HEADER: len(pack.envelopes)} if pack.packed else None,
        )
        await exchange.publish(message, pack.routing_key)

    @staticmethod
    def _message(
        envelope: Envelope,
        *,
        expiration: timedelta | None = None,
        headers: dict[str, Any] | None = None,
    ) -> aio_pika.Message:
        return aio_pika.Message(
            envelope.to_bytes(),
            content_type=SINGLE_CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(envelope.id),
            type=envelope.type,
            expiration=expiration,
            headers=headers,
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
        """Deliveries holding up to `max_batch` events (a packed message counts its events)."""
        buffer = subscription.buffer
        messages = [await buffer.get()]
        events = _events_in(messages[0][0])
        loop = asyncio.get_running_loop()
        linger_until = loop.time() + BATCH_LINGER_SECONDS
        while events < subscription.max_batch:
            if not buffer.empty():
                messages.append(buffer.get_nowait())
            else:
                remaining = linger_until - loop.time()
                if remaining <= 0:
                    break
                # Not asyncio.wait_for: see common/waiting.py.
                try:
                    async with asyncio.timeout(remaining):
                        messages.append(await buffer.get())
                except TimeoutError:
                    break
            events += _events_in(messages[-1][0])
        return messages

    async def _handle_batch(self, subscription: _Subscription, deliveries: list[_Delivery]) -> None:
        consumer = subscription.consumer
        envelopes: list[Envelope] = []
        decoded: list[_Delivery] = []  # the undecodable ones are settled already
        # Which delivery each envelope came in, by identity: the same envelope may
        # legitimately arrive twice, and a packed message brings several.
        came_in: dict[int, _Delivery] = {}
        for delivery in deliveries:
            message, acks = delivery
            if message.redelivered:
                REDELIVERED.labels(consumer).inc()
            unpacked = await self._decode_events(consumer, message, acks)
            if unpacked:
                decoded.append(delivery)
            for envelope in unpacked:
                envelopes.append(envelope)
                came_in[id(envelope)] = delivery
        if not envelopes:
            return
        failed: dict[int, list[tuple[Envelope, BaseException]]] = {}

        async def on_failure(envelope: Envelope, exc: BaseException) -> None:
            message = came_in[id(envelope)][0]
            failed.setdefault(id(message), []).append((envelope, exc))

        # A packed message may hold more than the handler takes at once.
        size = subscription.max_batch
        for start in range(0, len(envelopes), size):
            await deliver_batch(envelopes[start : start + size], subscription.handler, on_failure)
        # Each delivery is settled once all of its envelopes were handled: acknowledged if
        # none failed, else the failed ones go the way of a failed message.
        acknowledged = 0
        for message, acks in decoded:
            failures = failed.get(id(message))
            if failures is None:
                if acks is not None:
                    acks.finished(message.delivery_tag or 0)
                acknowledged += _events_in(message)
            elif is_packed(message.content_type):
                acknowledged += _events_in(message) - len(failures)
                self._return_from_pack(subscription, message, acks, failures)
            else:
                envelope, exc = failures[0]
                self._return_later(consumer, envelope, message, acks, exc)
        CONSUMED.labels(consumer).inc(acknowledged)

    async def _decode_events(
        self, consumer: str, message: AbstractIncomingMessage, acks: _ChannelAcks | None
    ) -> list[Envelope]:
        if not is_packed(message.content_type):
            envelope = await self._decode(consumer, message, acks)
            return [] if envelope is None else [envelope]
        try:
            return unpack(message.body, declared_count(message.headers))
        except UnpackError as exc:
            await self._reject_undecodable(consumer, message, acks, str(exc))
            return []

    async def _decode(
        self, consumer: str, message: AbstractIncomingMessage, acks: _ChannelAcks | None
    ) -> Envelope | None:
        try:
            return Envelope.from_bytes(message.body)
        except ValidationError as exc:
            await self._reject_undecodable(consumer, message, acks, str(exc).splitlines()[0])
            return None

    async def _reject_undecodable(
        self,
        consumer: str,
        message: AbstractIncomingMessage,
        acks: _ChannelAcks | None,
        error: str,
    ) -> None:
        await self._dead_letter_undecodable(
            consumer,
            message.message_id,
            message.routing_key,
            message.reject(requeue=False),
            message.delivery_tag or 0,
            acks,
            error,
        )

    async def _dead_letter_undecodable(
        self,
        consumer: str,
        message_id: str | None,
        routing_key: str | None,
        rejecting: Awaitable[Any],
        tag: int,
        acks: _ChannelAcks | None,
        error: str,
    ) -> None:
        FAILED.labels(consumer).inc()
        log.error(
            "undecodable message dead-lettered",
            consumer=consumer,
            message_id=message_id,
            routing_key=routing_key,
            error=error,
        )
        await self._settle(rejecting, consumer)
        if acks is not None:
            acks.settled(tag)

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
        deliveries = _delivery_count(message.headers)
        self._log_failure("message returned to the queue", consumer, envelope, deliveries, exc)
        delay = _backoff_seconds(deliveries)
        # A message taken out of a pack carries the pack's deliveries, which the queue's own
        # count does not know: at the limit it is dead-lettered here rather than returned.
        requeue = (
            _earlier_pack_deliveries(message.headers) == 0 or deliveries + 1 < self.delivery_limit
        )

        async def nack() -> None:
            try:
                await asyncio.sleep(delay)
            finally:
                await self._settle(message.nack(requeue=requeue), consumer)
                if acks is not None:
                    acks.settled(message.delivery_tag or 0)

        self._track(asyncio.create_task(nack()))

    def _log_failure(
        self,
        outcome: str,
        consumer: str,
        envelope: Envelope,
        deliveries: int,
        exc: BaseException,
    ) -> None:
        log.warning(
            f"handler failed; {outcome}",
            consumer=consumer,
            message_id=str(envelope.id),
            type=envelope.type,
            delivery=deliveries + 1,
            delivery_limit=self.delivery_limit,
            error=repr(exc),
        )

    def _return_from_pack(
        self,
        subscription: _Subscription,
        message: AbstractIncomingMessage,
        acks: _ChannelAcks | None,
        failures: list[tuple[Envelope, BaseException]],
    ) -> None:
        """What `_return_later` does for a single message, for the failed envelopes of a packed
        message whose other envelopes were handled.

        After the same back-off, each failed envelope is published alone to this consumer's
        queue (only: through the default exchange, by queue name), carrying the pack's
        deliveries so far in a header that the delivery limit counts; one that has reached the
        limit goes to the dead-letter exchange instead. Once the broker confirmed them all, the
        pack is acknowledged. If that fails (the channel closed, the bus is closing), the pack
        is returned whole: its handled envelopes come again, and the inbox skips them.
        """
        consumer = subscription.consumer
        FAILED.labels(consumer).inc(len(failures))
        deliveries = _delivery_count(message.headers)
        for envelope, exc in failures:
            self._log_failure(
                "event of a packed message returned to the queue alone",
                consumer,
                envelope,
                deliveries,
                exc,
            )
        delay = _backoff_seconds(deliveries)
        queue = subscription.queue.name if subscription.queue else self.queue_name(consumer)
        tag = message.delivery_tag or 0

        async def settle() -> None:
            try:
                await asyncio.sleep(delay)
                await self._republish(queue, [e for e, _ in failures], deliveries + 1)
            except BaseException as exc:
                await self._settle(message.nack(requeue=True), consumer)
                if acks is not None:
                    acks.settled(tag)
                if not isinstance(exc, Exception):
                    raise  # cancelled: the bus is closing
                log.warning(
                    "could not return the failed events alone; packed message returned whole",
                    consumer=consumer,
                    error=repr(exc),
                )
                return
            if acks is not None:
                acks.finished(tag)

        self._track(asyncio.create_task(settle()))

    async def _republish(
        self, queue: str, envelopes: list[Envelope], deliveries: int, *, jobs: bool = False
    ) -> None:
        """Publish `envelopes`, each alone, back to `queue`, or to the dead-letter exchange if
        `deliveries` reached the limit; returns once the broker confirmed every one. `jobs`:
        they are check jobs, which expire in the queue at their deadline again."""
        channel = self._require(self._publish_channel)
        dead = deliveries >= self.delivery_limit
        if dead:
            exchange, routing_key = self._require(self._dead_letters), ""
        else:
            exchange, routing_key = channel.default_exchange, queue
        headers: dict[str, Any] = {EARLIER_DELIVERIES_HEADER: deliveries, RETURNED_TO_HEADER: queue}
        # Mandatory: a queue deleted meanwhile is an error, not a silent loss.
        await asyncio.gather(
            *(
                exchange.publish(
                    self._message(
                        e,
                        headers=headers,
                        expiration=_expiration(deadline_of(e)) if jobs and not dead else None,
                    ),
                    routing_key,
                    mandatory=True,
                )
                for e in envelopes
            )
        )

    def _track(self, task: asyncio.Task[None]) -> None:
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
        # In messages, none of whose jobs started (a message is acknowledged when its first job
        # starts): the jobs this consumer holds are the `concurrency` running, the rest of the
        # message they were last taken from, and this many messages waiting. The broker hands
        # the other messages to the other probes of the region.
        prefetch = max(
            2, -(-job_consumer.concurrency // (JOBS_WAITING_SHARE * self.max_packed_jobs))
        )
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

        async def on_delivery(message: DeliveredMessage) -> None:
            # aiormq runs each delivery in a task of its own: that task runs jobs itself rather
            # than start one more task (for a lone job, the usual case below a few thousand
            # monitors, no task of ours at all). Tracked so that close() waits for it.
            task = asyncio.current_task()
            if task is not None:
                job_consumer.tasks.add(task)
            delivery = cast(aiormq.spec.Basic.Deliver, message.delivery)
            tag = delivery.delivery_tag or 0
            acks = job_consumer.acks = _ChannelAcks.on(
                job_consumer.acks, message.channel, prefetch=prefetch, consumer=consumer
            )
            if acks is not None:
                acks.delivered(tag)
            try:
                if delivery.redelivered:
                    redelivered.inc()
                jobs = await self._jobs_in(consumer, message, tag, acks)
                if not jobs:
                    return
                held = _JobMessage(
                    message.channel, tag, acks, _delivery_count(message.header.properties.headers)
                )
                job_consumer.waiting.extend((job, held) for job in jobs)
                await self._take_jobs(job_consumer)
            finally:
                if task is not None:
                    job_consumer.tasks.discard(task)

        async def consume(_channel: object = None) -> None:
            # Straight on aiormq's channel: aio-pika's consumer made an IncomingMessage and one
            # more task for every delivery, about a third of the job consumer's CPU per job
            # (bench/README.md, round 6). aio-pika restores the channel, its qos and the queue
            # after a reconnect, but only the consumers it made itself: this one is made again
            # from the channel's reopen callback, on the new underlying channel.
            if self._closing:
                return
            underlay = await channel.get_underlay_channel()
            underlay.on_consumer_cancel_callbacks.add(on_cancel)
            consume_ok = await underlay.basic_consume(queue.name, on_delivery, no_ack=False)
            job_consumer.consumer_tag = consume_ok.consumer_tag

        def on_cancel(frame: aiormq.spec.Basic.Cancel) -> None:
            # The broker cancelled the consumer (its queue was deleted): aio-pika recovers its
            # own consumers from that by reconnecting; this one declares its queue again.
            if frame.consumer_tag == job_consumer.consumer_tag and not self._closing:
                self._spawn_start(resume())

        async def resume() -> None:
            try:
                await queue.declare()
                await queue.bind(jobs, job_consumer.region)
                await consume()
            except Exception as exc:
                log.error("could not consume jobs again", queue=queue.name, error=repr(exc))

        await consume()
        channel.reopen_callbacks.add(consume)
        log.info(
            "consuming jobs",
            queue=queue.name,
            concurrency=job_consumer.concurrency,
            prefetch=prefetch,
        )

    async def _jobs_in(
        self,
        consumer: str,
        message: DeliveredMessage,
        tag: int,
        acks: _ChannelAcks | None,
    ) -> list[Envelope]:
        """The jobs of a delivered message, packed or alone (a consumer reads both: producers
        of either framing may run during an upgrade); an undecodable one is dead-lettered."""
        properties = message.header.properties
        try:
            if is_packed(properties.content_type):
                return unpack(message.body, declared_count(properties.headers))
            return [Envelope.from_bytes(message.body)]
        except ValueError as exc:  # UnpackError, or pydantic's ValidationError
            await self._dead_letter_undecodable(
                consumer,
                properties.message_id,
                message.routing_key,
                message.channel.basic_reject(tag, requeue=False),
                tag,
                acks,
                str(exc).splitlines()[0],
            )
            return []

    async def _take_jobs(self, job_consumer: _JobConsumer) -> None:
        """Run waiting jobs while there are free places: this task takes one place, and one
        more task starts for each further place that a waiting job can fill."""
        places = min(job_consumer.concurrency - job_consumer.working, len(job_consumer.waiting))
        if places <= 0:
            return  # the tasks at work take the new jobs as they finish theirs
        job_consumer.working += places
        for _ in range(places - 1):
            task = asyncio.create_task(self._work(job_consumer))
            job_consumer.tasks.add(task)
            task.add_done_callback(job_consumer.tasks.discard)
        await self._work(job_consumer)

    async def _work(self, job_consumer: _JobConsumer) -> None:
        """Run the waiting jobs one after another, in delivery order, until none is left; the
        place was counted in `working` by whoever started this."""
        waiting = job_consumer.waiting
        try:
            while waiting and not self._closing:
                job, held = waiting.popleft()
                if not held.started:
                    if held.channel.is_closed:
                        continue  # the broker has returned its message: it comes again whole
                    self._start(held)
                await self._run_job(job_consumer, job, held)
        finally:
            job_consumer.working -= 1

    @staticmethod
    def _start(held: _JobMessage) -> None:
        """A message's first job starts: the message is acknowledged now.

        Not when its last job ends, as an event's message is: once one of its checks ran, a
        redelivery of the whole message (after this probe crashed, say) would run that check
        again in the same interval, and a probe cannot know which jobs of a message another one
        already ran. Acknowledged now, a crash loses the message's jobs that had not finished,
        this interval's checks of the monitors the probe held, and none runs twice; before it,
        a crash returns the message whole and nothing of it has run. It also frees the
        message's prefetch place as soon as its jobs are at work, which keeps the prefetch a
        count of messages none of whose jobs started (see `_start_job_consumer`)."""
        held.started = True
        if held.acks is not None:
            held.acks.finished(held.tag)

    async def _run_job(self, job_consumer: _JobConsumer, job: Envelope, held: _JobMessage) -> None:
        try:
            await job_consumer.handler(job)
        except asyncio.CancelledError:
            # The bus is closing and the check did not finish in its grace time: its message is
            # acknowledged, so it goes back to the queue for another probe.
            self._give_back(job_consumer, [(job, held)], 0.0)
            raise
        except Exception as exc:
            FAILED.labels(f"jobs.{job_consumer.region}").inc()
            log.warning(
                "check job failed; returned to the queue",
                job_id=str(job.id),
                region=job_consumer.region,
                delivery=held.deliveries + 1,
                error=repr(exc),
            )
            self._give_back(job_consumer, [(job, held)], _backoff_seconds(held.deliveries))
            return
        job_consumer.consumed.inc()

    def _give_back(
        self, job_consumer: _JobConsumer, jobs: list[tuple[Envelope, _JobMessage]], delay: float
    ) -> None:
        """Publish jobs of acknowledged messages again, each alone, to the region's queue after
        `delay` (at once if the bus closes meanwhile), carrying their deliveries so far: a job
        that failed on each of its `delivery_limit` deliveries goes to the dead-letter exchange
        instead (`_republish`). If the broker cannot take it, the job is lost: logged, its
        check does not run this interval."""
        key = object()

        def send() -> None:
            self._held_back.pop(key, None)
            task = asyncio.create_task(self._return_jobs(job_consumer.region, jobs))
            self._returning.add(task)
            task.add_done_callback(self._returning.discard)

        if delay <= 0 or self._closing:
            send()
            return
        # A timer rather than a sleeping task: close() sends what still waits at once, and a
        # task cancelled before its first step would never send it.
        timer = asyncio.get_running_loop().call_later(delay, send)
        self._held_back[key] = (timer, send)

    async def _return_jobs(self, region: str, jobs: list[tuple[Envelope, _JobMessage]]) -> None:
        queue = self.job_queue_name(region)
        results = await asyncio.gather(
            *(self._republish(queue, [job], held.deliveries + 1, jobs=True) for job, held in jobs),
            return_exceptions=True,
        )
        for (job, _held), result in zip(jobs, results, strict=True):
            if isinstance(result, BaseException):
                log.error(
                    "check job lost: could not return it to the queue",
                    job_id=str(job.id),
                    region=region,
                    error=repr(result),
                )

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


def _expiration(deadline: datetime) -> timedelta:
    """A message's AMQP expiration for a deadline: at least 1 ms (0 would mean "deliver now or
    never")."""
    remaining_ms = int((deadline - utcnow()).total_seconds() * 1000)
    return timedelta(milliseconds=max(1, remaining_ms))


def _properties(pack: Pack) -> aiormq.spec.Basic.Properties:
    if not pack.packed:
        envelope = pack.envelopes[0]
        return aiormq.spec.Basic.Properties(
            content_type=SINGLE_CONTENT_TYPE,
            delivery_mode=PERSISTENT,
            message_id=str(envelope.id),
            message_type=envelope.type,
        )
    return aiormq.spec.Basic.Properties(
        content_type=PACKED_CONTENT_TYPE,
        delivery_mode=PERSISTENT,
        # The first event's id: what a log line or the dead-letter queue shows for the pack.
        message_id=str(pack.envelopes[0].id),
        message_type=pack.routing_key,
        headers={COUNT_HEADER: len(pack.envelopes)},
    )


def _events_in(message: AbstractIncomingMessage) -> int:
    return declared_count(message.headers) if is_packed(message.content_type) else 1


def _earlier_pack_deliveries(headers: Mapping[str, Any] | None) -> int:
    earlier = (headers or {}).get(EARLIER_DELIVERIES_HEADER, 0)
    return earlier if isinstance(earlier, int) else 0


def _backoff_seconds(deliveries: int) -> float:
    """How long a failed message waits before it goes back: doubling from 50 ms, at most 2 s."""
    return min(0.05 * 2.0**deliveries, 2.0)


def _delivery_count(headers: Mapping[str, Any] | None) -> int:
    """Earlier deliveries of a message (from its headers): as counted by the quorum queue,
    plus those of the packed message it was taken out of (see `_return_from_pack`)."""
    count = (headers or {}).get("x-delivery-count", 0)
    return (count if isinstance(count, int) else 0) + _earlier_pack_deliveries(headers)
