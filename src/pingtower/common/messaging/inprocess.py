"""The embedded mode's transport: the same bus contract, inside one process.

Like a RabbitMQ queue, each consumer has its own queue, delivers in batches, redelivers a failing
message up to the delivery limit and then dead-letters it. Messages live in memory, so
`publish` returns only once every matching consumer has committed (or dead-lettered) them: that
is this transport's publisher confirm. Until then the outbox row stays unsent, so a stop at any
point loses nothing; the next start publishes it again and the consumer's inbox drops a copy.
A handler must therefore never publish directly an event that its own consumer subscribes to
(handlers publish through their outbox).

`hand_over` (a probe's check results, whose loss in a stop is one missed check) returns as soon
as the messages are queued, as RabbitMQ confirms a message it holds without waiting for its
consumers: a consumer busy for seconds (statistics folding a minute of 50,000 monitors) then
lags behind instead of stopping the checks. A consumer's queue is not let grow past
`backlog_limit`: past it, `hand_over` waits until the consumer has taken messages off it, so the
probe goes at the consumer's pace (waiting instead for the commits of its own messages, at the
end of a full queue, would hold each job for the whole queue's time and starve the probe).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter

import structlog
from prometheus_client import Counter, Histogram

from pingtower.common.events import Envelope
from pingtower.common.messaging.bus import (
    BatchHandler,
    Bus,
    JobHandler,
    UnpublishedJob,
    deliver_batch,
    topic_matches,
)

log = structlog.get_logger(__name__)

# Their ratio is the mean batch size: one consumer transaction per batch.
BATCHES = Counter(
    "pingtower_inprocess_batches_total", "Batches the in-process bus handed over", ["consumer"]
)
BATCHED_MESSAGES = Counter(
    "pingtower_inprocess_batched_messages_total",
    "Messages the in-process bus handed over in batches",
    ["consumer"],
)

# How far behind a consumer is: the wait of each batch's oldest message, from its queueing (or
# requeueing for a retry) to its handler (the linger for a fuller batch included).
QUEUE_WAIT = Histogram(
    "pingtower_inprocess_queue_wait_seconds",
    "Wait of each in-process batch's oldest message before its handler got it",
    ["consumer"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
HANDED_OVER_LOST = Counter(
    "pingtower_inprocess_handed_over_lost_total",
    "Handed-over messages (check results) dropped unconsumed because the bus closed",
)


class _Settlement:
    """One `publish` call's wait: resolved once every consumer committed (or dead-lettered)
    each of its messages, failed as soon as one of them cannot be. publish() waits for it, so
    the outbox marks a row sent only when no stop can lose its event any more. One future per
    call, not one per delivery gathered: those were a fifth of the bus's CPU per result."""

    __slots__ = ("future", "remaining")

    def __init__(self, future: asyncio.Future[None], remaining: int) -> None:
        self.future = future
        self.remaining = remaining

    def fail(self, error: BaseException) -> None:
        if not self.future.done():  # done: failed already, or its publisher was cancelled
            self.future.set_exception(error)


class _Delivery:
    __slots__ = ("attempt", "envelope", "queued_at", "settled", "settlement")

    def __init__(
        self, envelope: Envelope, attempt: int, settlement: _Settlement | None, queued_at: float
    ) -> None:
        self.envelope = envelope
        self.attempt = attempt
        self.settlement = settlement
        self.queued_at = queued_at  # loop time
        self.settled = False  # counted in its settlement (once only)

    def settle(self) -> None:
        if not self.settled:
            self.settled = True
            settlement = self.settlement
            if settlement is None:  # handed over: nobody waits for it
                return
            settlement.remaining -= 1
            if settlement.remaining == 0 and not settlement.future.done():
                settlement.future.set_result(None)

    def fail(self, error: BaseException) -> None:
        if not self.settled:
            self.settled = True
            if self.settlement is None:
                HANDED_OVER_LOST.inc()
                return
            self.settlement.fail(error)


class _Linger:
    """One consumer task's wait for its batch to fill, until `deadline` (loop time); ended
    early when the batch is full or brought forward by a message that may not wait as long.
    `taken`: the messages the task holds already."""

    __slots__ = ("_loop", "_timer", "deadline", "ended", "taken")

    def __init__(self, loop: asyncio.AbstractEventLoop, deadline: float, taken: int) -> None:
        self._loop = loop
        self.deadline = deadline
        self.taken = taken
        self.ended: asyncio.Future[None] = loop.create_future()
        self._timer = loop.call_at(deadline, self.end)

    def end(self) -> None:
        self._timer.cancel()
        if not self.ended.done():
            self.ended.set_result(None)

    def bring_forward(self, deadline: float) -> None:
        if deadline < self.deadline and not self.ended.done():
            self._timer.cancel()
            self.deadline = deadline
            self._timer = self._loop.call_at(deadline, self.end)


class _JobQueue:
    """A region's check jobs and the probe tasks waiting for one: what the bus used of
    `asyncio.Queue` (unbounded, no `task_done`), without its bookkeeping per job (a size check,
    the unfinished count and its event, the putters' wake-up), which was most of a job's
    hand-off besides the wake-up of the task that takes it."""

    __slots__ = ("_jobs", "_waiting")

    def __init__(self) -> None:
        self._jobs: deque[Envelope] = deque()
        self._waiting: deque[asyncio.Future[None]] = deque()

    def qsize(self) -> int:
        return len(self._jobs)

    def empty(self) -> bool:
        return not self._jobs

    def put_nowait(self, job: Envelope) -> None:
        self._jobs.append(job)
        self._wake_one()

    def put_all(self, jobs: Sequence[Envelope]) -> None:
        """`put_nowait` of each job, in order, as one call: a tick's jobs wake a task each
        without two method calls per job."""
        self._jobs.extend(jobs)
        waiting = self._waiting
        wake = len(jobs)
        while wake and waiting:
            waiter = waiting.popleft()
            if not waiter.done():  # done: its task was cancelled
                waiter.set_result(None)
                wake -= 1

    def get_nowait(self) -> Envelope:
        if not self._jobs:
            raise asyncio.QueueEmpty
        return self._jobs.popleft()

    async def get(self) -> Envelope:
        jobs = self._jobs
        while not jobs:
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiting.remove(waiter)
                if jobs and not waiter.cancelled():
                    self._wake_one()  # woken for a job, then cancelled: another task takes it
                raise
        # A task woken for a job may find it taken by one that did not have to wait: it waits
        # again, as with asyncio.Queue.
        return jobs.popleft()

    def _wake_one(self) -> None:
        waiting = self._waiting
        while waiting:
            waiter = waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


@dataclass
class _Consumer:
    name: str
    routing_keys: tuple[str, ...]
    handlers: list[BatchHandler]
    max_batch: int
    # A deque and the futures of the tasks waiting for it, not an asyncio.Queue: its
    # put_nowait and get_nowait (a waiter check and a counter per message) were the bus's
    # largest cost per result; a publish wakes the waiting tasks once.
    queue: deque[_Delivery] = field(default_factory=deque)
    waiting: list[asyncio.Future[None]] = field(default_factory=list)
    batches: Counter = field(init=False)  # its label resolved once, not per batch
    messages: Counter = field(init=False)
    waited: Histogram = field(init=False)
    lingering: list[_Linger] = field(default_factory=list)  # its tasks waiting for a batch
    backlog_limit: int = 4_000
    # `hand_over` calls waiting for the queue to be under `backlog_limit` again
    room: list[asyncio.Future[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.batches = BATCHES.labels(self.name)
        self.messages = BATCHED_MESSAGES.labels(self.name)
        self.waited = QUEUE_WAIT.labels(self.name)

    def wake(self) -> None:
        _wake_all(self.waiting)

    def make_room(self) -> None:
        _wake_all(self.room)

    async def wait(self) -> None:
        """Returns once a message is queued (at once if one is)."""
        while not self.queue:
            await _woken_from(self.waiting)


def _wake_all(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)
    waiters.clear()


async def _woken_from(waiters: list[asyncio.Future[None]]) -> None:
    """Wait until `_wake_all(waiters)` (or a cancellation, which leaves the list)."""
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiters.append(waiter)
    try:
        await waiter
    finally:
        if waiter in waiters:
            waiters.remove(waiter)


class InProcessBus(Bus):
    def __init__(
        self,
        *,
        delivery_limit: int = 5,
        linger_seconds: float = 0.05,
        linger_by_type: Mapping[str, float] | None = None,
        backlog_limit: int = 4_000,
    ) -> None:
        self.delivery_limit = delivery_limit
        # Messages a consumer may have queued before `hand_over` waits for it to take some:
        # 2.4 s of results at 50,000 monitors every 30 s, more than statistics' fold holds its
        # write lock (0.5-1.5 s). With 20,000 (12 s) an evaluator that fell behind after an
        # import stayed 30 s behind, its status decisions as late (bench/README.md, round 9).
        self.backlog_limit = backlog_limit
        # How long a consumer waits after a first message for more to fill its batch. Each
        # batch is one transaction; without the wait a consumer faster than its producers
        # commits nearly every message on its own, and per-transaction costs dominated the
        # embedded process's CPU (bench/README.md). It delays a delivery by at most this.
        self.linger_seconds = linger_seconds
        # Per event type, a longer (or shorter) wait: plentiful check results can wait longer
        # for a bigger batch than status changes that alerts wait for. A batch waits as long
        # as its most urgent message allows (counted from when the consumer has it).
        self.linger_by_type = dict(linger_by_type or {})
        self.dead_letters: list[Envelope] = []
        self._consumers: dict[str, _Consumer] = {}
        # Event type -> the consumers it routes to: topic matching per message and consumer
        # was a visible share of the probe's CPU. Cleared whenever a consumer subscribes.
        self._routes: dict[str, list[_Consumer]] = {}
        self._jobs: dict[str, _JobQueue] = {}
        self._job_handlers: list[tuple[str, JobHandler, int]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._closed = False

    async def start(self) -> None:
        self._started = True
        self._closed = False
        for consumer in self._consumers.values():
            for handler in consumer.handlers:
                self._tasks.append(asyncio.create_task(self._run_consumer(consumer, handler)))
        for region, job_handler, concurrency in self._job_handlers:
            for _ in range(concurrency):
                self._tasks.append(asyncio.create_task(self._run_jobs(region, job_handler)))

    async def close(self) -> None:
        self._closed = True
        for consumer in self._consumers.values():
            while consumer.queue:
                consumer.queue.popleft().fail(ConnectionError("in-process bus closed"))
            consumer.make_room()  # the waiting hand-overs find the bus closed
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._started = False

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        await (await self.publish_in_turn(envelopes))

    async def publish_in_turn(self, envelopes: Sequence[Envelope]) -> asyncio.Future[None]:
        # Queued before it returns, so the queues keep the calls' order; the future settles
        # once every consumer committed its messages.
        if self._closed:
            raise ConnectionError("in-process bus closed")
        settlement = _Settlement(asyncio.get_running_loop().create_future(), 0)
        self._enqueue(envelopes, settlement)
        if not settlement.remaining:
            settlement.future.set_result(None)
        return settlement.future

    async def hand_over(self, envelopes: Sequence[Envelope]) -> None:
        while True:
            if self._closed:
                raise ConnectionError("in-process bus closed")
            backlogged = self._backlogged(envelopes)
            if backlogged is None:
                break
            await _woken_from(backlogged.room)
        self._enqueue(envelopes, None)

    def _backlogged(self, envelopes: Sequence[Envelope]) -> _Consumer | None:
        """A consumer of `envelopes` with `backlog_limit` messages queued, if there is one."""
        for event_type in {envelope.type for envelope in envelopes}:
            for consumer in self._route(event_type):
                if len(consumer.queue) >= consumer.backlog_limit:
                    return consumer
        return None

    def _enqueue(self, envelopes: Sequence[Envelope], settlement: _Settlement | None) -> None:
        """Queue each envelope for every consumer it routes to (counted in `settlement`, if
        someone waits for their commits) and wake those consumers."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        # Each consumer reached, with the shortest linger of the messages it got.
        reached: dict[str, tuple[_Consumer, float]] = {}
        consumers: list[_Consumer] = []
        last_type = None
        for envelope in envelopes:
            if envelope.type != last_type:  # a publish is mostly of one type
                last_type = envelope.type
                consumers = self._route(last_type)
                linger = self._linger_of(last_type)
                for consumer in consumers:
                    known = reached.get(consumer.name)
                    if known is None or linger < known[1]:
                        reached[consumer.name] = (consumer, linger)
            for consumer in consumers:
                consumer.queue.append(_Delivery(envelope, 1, settlement, now))
            if settlement is not None:
                settlement.remaining += len(consumers)
        for consumer, linger in reached.values():
            if consumer.lingering:
                self._hurry(consumer, linger, loop)
            consumer.wake()

    def _linger_of(self, event_type: str) -> float:
        return self.linger_by_type.get(event_type, self.linger_seconds)

    @staticmethod
    def _hurry(consumer: _Consumer, seconds: float, loop: asyncio.AbstractEventLoop) -> None:
        """Messages reached a consumer whose tasks wait for their batch to fill: a full batch
        goes now, and a message that may wait less than the batch's first brings it forward."""
        deadline = loop.time() + seconds
        waiting = len(consumer.queue)
        for linger in consumer.lingering:
            if linger.taken + waiting >= consumer.max_batch:
                linger.end()
            else:
                linger.bring_forward(deadline)

    def _route(self, event_type: str) -> list[_Consumer]:
        found = self._routes.get(event_type)
        if found is None:
            found = [
                consumer
                for consumer in self._consumers.values()
                if any(topic_matches(key, event_type) for key in consumer.routing_keys)
            ]
            self._routes[event_type] = found
        return found

    async def publish_job(self, job: Envelope, region: str) -> None:
        self._job_queue(region).put_nowait(job)

    async def publish_jobs(self, jobs: Sequence[tuple[Envelope, str]]) -> list[UnpublishedJob]:
        if self._closed:
            error = ConnectionError("in-process bus closed")
            return [UnpublishedJob(job, region, error) for job, region in jobs]
        # A tick's jobs are mostly of one region: one run, handed over at once.
        for region, run in groupby(jobs, key=itemgetter(1)):
            self._job_queue(region).put_all([job for job, _ in run])
        return []

    def subscribe(
        self,
        consumer: str,
        routing_keys: Sequence[str],
        handler: BatchHandler,
        *,
        max_batch: int = 100,
        broadcast: bool = False,
    ) -> None:
        # One process: a broadcast subscription is an ordinary one.
        existing = self._consumers.get(consumer)
        if existing is None:
            existing = _Consumer(
                consumer, tuple(routing_keys), [], max_batch, backlog_limit=self.backlog_limit
            )
            self._consumers[consumer] = existing
            self._routes.clear()
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
        return 0 if found is None else len(found.queue)

    def _job_queue(self, region: str) -> _JobQueue:
        # Not `setdefault(region, _JobQueue())`: that built a queue per job published (7 % of
        # the scheduler's samples in the embedded process).
        queue = self._jobs.get(region)
        if queue is None:
            queue = self._jobs[region] = _JobQueue()
        return queue

    async def _run_consumer(self, consumer: _Consumer, handler: BatchHandler) -> None:
        while True:
            await consumer.wait()
            deliveries: list[_Delivery] = []
            try:
                # What is queued already is taken now: its most urgent message sets the wait.
                self._take(consumer, deliveries)
                if len(deliveries) < consumer.max_batch:
                    types = {d.envelope.type for d in deliveries}
                    linger = min(self._linger_of(event_type) for event_type in types)
                    if linger > 0:
                        await self._linger(consumer, linger, len(deliveries))
                        self._take(consumer, deliveries)
                consumer.batches.inc()
                consumer.messages.inc(len(deliveries))
                consumer.waited.observe(asyncio.get_running_loop().time() - deliveries[0].queued_at)
                await self._deliver(consumer, handler, deliveries)
            except asyncio.CancelledError:
                # Stopped mid-batch: the publishers learn it was not consumed, so their
                # outbox rows stay unsent and are published again on the next start.
                for delivery in deliveries:
                    delivery.fail(ConnectionError("in-process bus closed"))
                raise

    @staticmethod
    def _take(consumer: _Consumer, deliveries: list[_Delivery]) -> None:
        queue = consumer.queue
        for _ in range(min(consumer.max_batch - len(deliveries), len(queue))):
            deliveries.append(queue.popleft())
        if consumer.room and len(queue) < consumer.backlog_limit:
            consumer.make_room()

    async def _linger(self, consumer: _Consumer, seconds: float, taken: int) -> None:
        loop = asyncio.get_running_loop()
        linger = _Linger(loop, loop.time() + seconds, taken)
        consumer.lingering.append(linger)
        try:
            await linger.ended
        finally:
            linger.end()
            consumer.lingering.remove(linger)

    async def _deliver(
        self, consumer: _Consumer, handler: BatchHandler, deliveries: list[_Delivery]
    ) -> None:
        failed: list[tuple[_Delivery, BaseException]] = []

        async def on_failure(envelope: Envelope, exc: BaseException) -> None:
            failed.append((next(d for d in deliveries if d.envelope is envelope), exc))

        await deliver_batch([d.envelope for d in deliveries], handler, on_failure)
        failing = {id(delivery) for delivery, _ in failed}
        for delivery in deliveries:
            if id(delivery) not in failing:
                delivery.settle()
        for delivery, exc in failed:
            await self._retry(consumer, delivery, exc)

    async def _retry(self, consumer: _Consumer, delivery: _Delivery, exc: BaseException) -> None:
        envelope = delivery.envelope
        if delivery.attempt >= self.delivery_limit:
            log.error(
                "message dead-lettered",
                consumer=consumer.name,
                message_id=str(envelope.id),
                type=envelope.type,
                error=repr(exc),
            )
            self.dead_letters.append(envelope)
            delivery.settle()
            return
        log.warning(
            "redelivering",
            consumer=consumer.name,
            message_id=str(envelope.id),
            attempt=delivery.attempt,
            error=repr(exc),
        )
        await asyncio.sleep(min(0.05 * 2**delivery.attempt, 2.0))
        # The same message again: settling it settles the publish that is waiting for it.
        delivery.settled = True
        consumer.queue.append(
            _Delivery(
                envelope,
                delivery.attempt + 1,
                delivery.settlement,
                asyncio.get_running_loop().time(),
            )
        )
        consumer.wake()

    async def _run_jobs(self, region: str, handler: JobHandler) -> None:
        get = self._job_queue(region).get
        while True:
            job = await get()
            try:
                await handler(job)
            except Exception:
                log.exception("check job failed", job_id=str(job.id))
