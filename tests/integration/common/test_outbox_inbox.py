"""The outbox and the inbox prove the messaging guarantee: a crash or a redelivery at any point
neither loses an event nor applies it twice.

Each test runs on both stacks the system ships with: SQLite with the in-process bus (embedded
mode) and PostgreSQL with RabbitMQ (distributed mode). Producer and consumer have separate
databases, as two services would.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from pingtower.common.db import create_engine, session_factory
from pingtower.common.events import Envelope
from pingtower.common.messaging.bus import BatchHandler, Bus, JobHandler
from pingtower.common.messaging.inbox import Inbox
from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.messaging.outbox import IN_FLIGHT, Outbox, OutboxRelay
from tests.integration.common.broker import Broker
from tests.integration.common.things import (
    ThingCreated,
    create_tables,
    create_thing,
    effect_count,
    effect_sequence,
    inbox,
    outbox,
    record_effects,
    things,
)
from tests.integration.common.waiting import eventually

REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Stack:
    """A producer (database + outbox) and a consumer (database + inbox) joined by a bus."""

    producer_url: str
    producer: async_sessionmaker[AsyncSession]
    consumer: async_sessionmaker[AsyncSession]
    bus: Bus  # the consumer's
    publisher_bus: Bus  # the producer's relay's (the same object for the in-process bus)
    engines: list[AsyncEngine] = field(default_factory=list)
    outbox: Outbox = field(default_factory=lambda: Outbox(outbox, producer="things"))

    def consume(self, *, max_batch: int = 50) -> list[Envelope]:
        """Subscribe the consumer (effect through its inbox); returns what it was delivered."""
        delivered: list[Envelope] = []
        handle = Inbox(inbox, consumer="things-projection").handler(self.consumer, record_effects)

        async def handler(batch: Sequence[Envelope]) -> None:
            await handle(batch)
            delivered.extend(batch)  # only once the inbox transaction committed

        self.bus.subscribe("things-projection", ["thing.#"], handler, max_batch=max_batch)
        return delivered

    def relay(self, bus: Bus | None = None, *, batch: int = 500) -> OutboxRelay:
        return OutboxRelay(
            self.producer, self.outbox, bus or self.publisher_bus, poll_seconds=0.02, batch=batch
        )

    async def start(self) -> None:
        await self.bus.start()
        if self.publisher_bus is not self.bus:
            await self.publisher_bus.start()

    async def unsent(self) -> list[str]:
        async with self.producer() as session:
            rows = await session.scalars(
                select(outbox.c.message_id).where(outbox.c.sent_at.is_(None)).order_by(outbox.c.id)
            )
            return list(rows.all())


async def _engine(url: str, stack_engines: list[AsyncEngine]) -> async_sessionmaker[AsyncSession]:
    engine = create_engine(url)
    stack_engines.append(engine)
    await create_tables(engine)
    return session_factory(engine)


@dataclass
class EmbeddedDatabases:
    """The embedded mode's producer and consumer SQLite files, for the tests that start an
    in-process bus (or two, one after the other) themselves."""

    producer_url: str
    producer: async_sessionmaker[AsyncSession]
    consumer: async_sessionmaker[AsyncSession]
    engines: list[AsyncEngine]

    def stack(self, bus: InProcessBus) -> Stack:
        return Stack(self.producer_url, self.producer, self.consumer, bus, bus, self.engines)


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[EmbeddedDatabases]:
    engines: list[AsyncEngine] = []
    try:
        producer_url = f"sqlite+aiosqlite:///{tmp_path}/producer.sqlite3"
        yield EmbeddedDatabases(
            producer_url,
            await _engine(producer_url, engines),
            await _engine(f"sqlite+aiosqlite:///{tmp_path}/consumer.sqlite3", engines),
            engines,
        )
    finally:
        for engine in engines:
            await engine.dispose()


@dataclass
class Servers:
    """Where a stack keeps its data: SQLite files, or the PostgreSQL and RabbitMQ servers."""

    kind: str
    tmp_path: Path
    make_pg_database: Callable[[], Awaitable[str]] | None = None
    broker: Broker | None = None


@pytest.fixture(params=["sqlite+inprocess", "postgresql+rabbitmq"])
def servers(request: pytest.FixtureRequest, tmp_path: Path) -> Servers:
    # Synchronous on purpose: only outside the event loop can a fixture ask for the server
    # fixtures that this one parameter needs (the SQLite stack needs none).
    if request.param == "sqlite+inprocess":
        return Servers(request.param, tmp_path)
    return Servers(
        request.param,
        tmp_path,
        make_pg_database=request.getfixturevalue("make_pg_database"),
        broker=request.getfixturevalue("broker"),
    )


@pytest.fixture
async def stack(servers: Servers) -> AsyncIterator[Stack]:
    engines: list[AsyncEngine] = []
    if servers.make_pg_database is None or servers.broker is None:
        producer_url = f"sqlite+aiosqlite:///{servers.tmp_path}/producer.sqlite3"
        consumer_url = f"sqlite+aiosqlite:///{servers.tmp_path}/consumer.sqlite3"
        bus: Bus = InProcessBus()
        publisher_bus = bus
    else:
        producer_url = await servers.make_pg_database()
        consumer_url = await servers.make_pg_database()
        bus, publisher_bus = servers.broker.bus(), servers.broker.bus()
    stack = Stack(
        producer_url=producer_url,
        producer=await _engine(producer_url, engines),
        consumer=await _engine(consumer_url, engines),
        bus=bus,
        publisher_bus=publisher_bus,
        engines=engines,
    )
    yield stack
    await stack.bus.close()
    await stack.publisher_bus.close()
    for engine in engines:
        await engine.dispose()


async def _count(sessions: async_sessionmaker[AsyncSession], table: Table) -> int:
    async with sessions() as session:
        return (await session.scalar(select(func.count()).select_from(table))) or 0


async def test_change_and_its_event_are_committed_together_or_not_at_all(stack: Stack) -> None:
    envelope = await create_thing(stack.producer, stack.outbox, "kept")

    with pytest.raises(RuntimeError, match="validation failed"):
        await _create_thing_then_give_up(stack)

    assert await _count(stack.producer, things) == 1
    assert await stack.unsent() == [str(envelope.id)]  # only the committed one's event


async def _create_thing_then_give_up(stack: Stack) -> None:
    lost = uuid.uuid4()
    async with stack.producer() as session, session.begin():
        await session.execute(things.insert().values(id=lost, tenant="acme", name="lost"))
        await stack.outbox.add(session, ThingCreated(thing_id=lost, name="lost"), tenant="acme")
        raise RuntimeError("validation failed")  # the use case gives up: rollback


async def test_relay_publishes_in_order_and_marks_rows_sent(stack: Stack) -> None:
    stack.consume(max_batch=5)
    await stack.start()
    for seq in range(30):
        await create_thing(stack.producer, stack.outbox, f"thing {seq}", seq)
    relay = stack.relay(batch=7)  # several batches, to prove the order holds across them

    relay.start()
    try:
        await eventually(lambda: _effects_are(stack, 30), what="30 effects")
        # The relay marks a batch sent after its publish returned, i.e. after the effects
        # are visible: stopped in between, it would leave the rows for the next start.
        await eventually(lambda: _all_sent(stack), what="every row marked sent")
    finally:
        await relay.stop()

    assert await effect_sequence(stack.consumer) == list(range(30))


async def _all_sent(stack: Stack) -> bool:
    return await stack.unsent() == []


async def _effects_are(stack: Stack, count: int) -> bool:
    return await effect_count(stack.consumer) >= count


async def test_producer_killed_between_commit_and_publish_sends_the_event_once_restarted(
    stack: Stack,
) -> None:
    delivered = stack.consume()
    await stack.start()
    producer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.common.producer_process",
        stack.producer_url,
        "survivor",
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert producer.stdout is not None
    line = await asyncio.wait_for(producer.stdout.readline(), 30)
    assert line.startswith(b"committed "), line
    message_id = line.split()[1].decode()

    producer.send_signal(signal.SIGKILL)  # after its commit, before any relay published
    assert await asyncio.wait_for(producer.wait(), 10) == -signal.SIGKILL

    assert await _count(stack.producer, things) == 1  # the change survived the crash
    assert await stack.unsent() == [message_id]  # and so did its event, unsent
    await asyncio.sleep(0.1)
    assert delivered == []

    relay = stack.relay()  # the restarted producer
    relay.start()
    try:
        await eventually(lambda: _effects_are(stack, 1), what="the event's effect")
        await asyncio.sleep(0.2)  # a second delivery would show up in this time
    finally:
        await relay.stop()

    assert [str(envelope.id) for envelope in delivered] == [message_id]
    assert await effect_count(stack.consumer) == 1
    assert await stack.unsent() == []


async def test_redelivered_message_has_its_effect_once(stack: Stack) -> None:
    delivered = stack.consume()
    await stack.start()
    envelope = Envelope.wrap(
        ThingCreated(thing_id=uuid.uuid4(), name="twice", seq=1),
        producer="things",
        tenant="acme",
    )

    await stack.publisher_bus.publish([envelope])
    await stack.publisher_bus.publish([envelope])  # the same message id again

    await eventually(lambda: len(delivered) == 2, what="both deliveries handled")
    assert await effect_count(stack.consumer) == 1


class Delegating(Bus):
    """A bus that passes everything to another; subclasses change what publishing does."""

    def __init__(self, inner: Bus) -> None:
        self.inner = inner

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        await self.inner.publish(envelopes)

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def publish_job(self, job: Envelope, region: str) -> None:
        await self.inner.publish_job(job, region)

    def subscribe(
        self,
        consumer: str,
        routing_keys: Sequence[str],
        handler: BatchHandler,
        *,
        max_batch: int = 100,
    ) -> None:
        self.inner.subscribe(consumer, routing_keys, handler, max_batch=max_batch)

    def consume_jobs(self, region: str, handler: JobHandler, *, concurrency: int) -> None:
        self.inner.consume_jobs(region, handler, concurrency=concurrency)

    async def check(self) -> None:
        await self.inner.check()


class CrashAfterPublish(Delegating):
    """The relay's bus in a process that dies right after the broker confirmed the publish,
    before the relay could mark its rows sent."""

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        await self.inner.publish(envelopes)
        raise ConnectionResetError("relay died after publishing")


class Counting(Delegating):
    def __init__(self, inner: Bus) -> None:
        super().__init__(inner)
        self.published = 0

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        await self.inner.publish(envelopes)
        self.published += len(envelopes)


async def test_relay_crash_after_publish_before_mark_sent_publishes_again_and_inbox_drops_copy(
    stack: Stack,
) -> None:
    delivered = stack.consume()
    await stack.start()
    envelope = await create_thing(stack.producer, stack.outbox, "twice published")

    with pytest.raises(ConnectionResetError):
        await stack.relay(CrashAfterPublish(stack.publisher_bus)).relay_once()
    assert await stack.unsent() == [str(envelope.id)]  # published, but not marked

    assert await stack.relay().relay_once() == 1  # the restarted relay publishes it again

    await eventually(lambda: len(delivered) == 2, what="both copies delivered")
    assert [e.id for e in delivered] == [envelope.id, envelope.id]
    assert await effect_count(stack.consumer) == 1
    assert await stack.unsent() == []


async def test_two_relays_on_one_postgres_outbox_publish_everything_in_order(
    make_pg_database: Callable[[], Awaitable[str]], broker: Broker
) -> None:
    engines: list[AsyncEngine] = []
    producer_url = await make_pg_database()
    stack = Stack(
        producer_url=producer_url,
        producer=await _engine(producer_url, engines),
        consumer=await _engine(await make_pg_database(), engines),
        bus=broker.bus(),
        publisher_bus=broker.bus(),
        engines=engines,
    )
    stack.consume()
    await stack.start()
    replicas = [Counting(stack.publisher_bus), Counting(broker.bus())]
    await replicas[1].start()
    relays = [stack.relay(replica, batch=10) for replica in replicas]
    for relay in relays:
        relay.start()
    try:
        for seq in range(120):  # produced while both relays run
            await create_thing(stack.producer, stack.outbox, f"thing {seq}", seq)
        await eventually(lambda: _effects_are(stack, 120), what="120 effects", timeout=20)
        for relay in relays:
            await relay.stop()

        assert await stack.unsent() == []
        assert await effect_sequence(stack.consumer) == list(range(120))  # none lost, none twice
        assert all(replica.published for replica in replicas)  # both relays took turns
    finally:
        for relay in relays:
            await relay.stop()
        for engine in engines:
            await engine.dispose()


async def test_event_relayed_but_not_yet_consumed_survives_a_stop_of_the_embedded_process(
    embedded: EmbeddedDatabases,
) -> None:
    """The embedded mode's guarantee across a stop: the outbox row is marked sent as soon as
    the in-process bus has the event in memory, so an event still waiting for its consumer
    when the process stops must come back on the next start (as RabbitMQ keeps it)."""
    first_run = InProcessBus()
    busy = asyncio.Event()

    async def still_busy(_batch: Sequence[Envelope]) -> None:
        busy.set()
        await asyncio.Event().wait()  # the consumer has not committed when the stop comes

    first_run.subscribe("things-projection", ["thing.#"], still_busy)
    await first_run.start()
    first = embedded.stack(first_run)
    await create_thing(embedded.producer, first.outbox, "in flight")
    first_relay = first.relay()
    first_relay.start()
    await asyncio.wait_for(busy.wait(), 5)  # relayed, and in the consumer's hands
    await asyncio.sleep(0.3)  # the relay finishes its round (marks the row sent, or waits)
    await first_run.close()  # the process stops
    await first_relay.stop()

    second_run = InProcessBus()
    second = embedded.stack(second_run)
    second.consume()
    await second_run.start()
    relay = second.relay()
    relay.start()
    try:
        await eventually(lambda: _effects_are(second, 1), timeout=3, what="the event")
    finally:
        await relay.stop()
        await second_run.close()


async def test_the_embedded_relay_has_several_batches_on_their_way_in_order(
    embedded: EmbeddedDatabases,
) -> None:
    """In-process, a batch settles only once its consumer committed it: the relay queues the
    next batches meanwhile (up to `IN_FLIGHT`), in order, and marks each sent once settled."""
    bus = InProcessBus(linger_seconds=0)
    stack = embedded.stack(bus)
    gate = asyncio.Event()
    delivered: list[Envelope] = []
    handle = Inbox(inbox, consumer="things-projection").handler(embedded.consumer, record_effects)

    async def gated(batch: Sequence[Envelope]) -> None:
        await gate.wait()
        await handle(batch)
        delivered.extend(batch)

    bus.subscribe("things-projection", ["thing.#"], gated, max_batch=5)
    await bus.start()
    relay = stack.relay(batch=5)
    try:
        for seq in range(40):
            await create_thing(embedded.producer, stack.outbox, f"thing {seq}", seq)
        relay.start()
        # The consumer holds its first batch: the relay goes on queueing the next ones.
        await eventually(
            lambda: bus.pending("things-projection") >= (IN_FLIGHT - 1) * 5,
            what="several batches queued before the first settled",
        )
        assert len(await stack.unsent()) == 40  # none marked: none committed yet
        gate.set()
        await eventually(lambda: _all_sent(stack), what="every row marked sent")
        assert [e.payload["seq"] for e in delivered] == list(range(40))
        assert await effect_sequence(embedded.consumer) == list(range(40))
    finally:
        await relay.stop()
        await bus.close()


async def test_a_relay_whose_publish_failed_starts_again_from_the_first_unsent_row(
    embedded: EmbeddedDatabases,
) -> None:
    first_run = InProcessBus(linger_seconds=0)
    stack = embedded.stack(first_run)
    stack.consume(max_batch=5)  # not started: nothing is consumed
    for seq in range(12):
        await create_thing(embedded.producer, stack.outbox, f"thing {seq}", seq)
    relay = stack.relay(batch=5)
    assert await relay.relay_once() == 5  # on its way, not settled
    assert await relay.relay_once() == 5
    await first_run.close()  # the two batches in flight fail
    with pytest.raises(ConnectionError):
        await relay.relay_once()
    assert len(await stack.unsent()) == 12

    second_run = InProcessBus(linger_seconds=0)
    relay.bus = second_run
    delivered = embedded.stack(second_run).consume(max_batch=5)
    await second_run.start()
    try:
        while await relay.relay_once() == 5:
            pass
        assert await stack.unsent() == []
        assert [e.payload["seq"] for e in delivered] == list(range(12))
        assert await effect_sequence(embedded.consumer) == list(range(12))
    finally:
        await second_run.close()
