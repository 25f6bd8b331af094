"""Transactional outbox: events are rows written in the same transaction as the change that
causes them; a relay publishes them in order, with publisher confirms, and then marks them sent.

A crash between publish and mark means the batch is published again on restart; consumers'
inboxes drop the copies. A crash before commit means neither the change nor the event exists.
Several replicas may run the relay: on PostgreSQL a transaction-scoped advisory lock lets one
publish at a time, which keeps the order.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections import deque
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog
from prometheus_client import Counter
from sqlalchemy import (
    Column,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    select,
    text,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pingtower.common.db import BigId, UtcDateTime, call_after_commit
from pingtower.common.events import Contract, Envelope, utcnow
from pingtower.common.messaging.bus import Bus
from pingtower.common.sqlite_driver import PlainTransaction
from pingtower.common.sqlite_values import utc_text
from pingtower.common.waiting import woken

log = structlog.get_logger(__name__)

RELAYED = Counter("pingtower_outbox_relayed_total", "Events published from an outbox", ["service"])
SENT_RETENTION = timedelta(hours=1)
# Publishes a relay without a lock has on their way at once, where the transport keeps their
# order (the in-process bus; elsewhere `Bus.publish_in_turn` publishes one at a time). Each
# settles once every consumer committed it: one at a time, behind consumers' queues of check
# results seconds long, a relay moved about 150 events a second and the events of an import of
# 50,000 monitors reached the notificator 8 minutes later (bench/README.md, round 10).
IN_FLIGHT = 8


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("id", BigId, primary_key=True, autoincrement=True),
        Column("message_id", String(36), nullable=False, unique=True),
        Column("type", String(100), nullable=False),
        Column("body", LargeBinary, nullable=False),
        Column("created_at", UtcDateTime, nullable=False),
        Column("sent_at", UtcDateTime, nullable=True),
        Index("ix_outbox_unsent", "sent_at", "id"),
    )


class Outbox:
    """Writes events into a service's outbox table, inside the caller's transaction."""

    def __init__(self, table: Table, producer: str) -> None:
        self.table = table
        self.producer = producer
        self._listeners: list[asyncio.Event] = []

    async def add(
        self,
        session: AsyncSession,
        event: Contract,
        *,
        tenant: str,
        occurred_at: datetime | None = None,
    ) -> Envelope:
        envelope = Envelope.wrap(
            event, producer=self.producer, tenant=tenant, occurred_at=occurred_at
        )
        await session.execute(
            self.table.insert().values(
                message_id=str(envelope.id),
                type=envelope.type,
                body=envelope.to_bytes(),
                created_at=utcnow(),
            )
        )
        call_after_commit(session, self._wake)
        return envelope

    def add_plain(
        self,
        transaction: PlainTransaction,
        event: Contract,
        *,
        tenant: str,
        occurred_at: datetime | None = None,
    ) -> Envelope:
        """`add` in a `plain_transaction` on SQLite: the same row, with the values SQLAlchemy
        would store (a test compares the two), written in the trip of the transaction's next
        statement or COMMIT (`OneTripConnection.defer`)."""
        envelope = Envelope.wrap(
            event, producer=self.producer, tenant=tenant, occurred_at=occurred_at
        )
        row = (str(envelope.id), envelope.type, envelope.to_bytes(), utc_text(utcnow()))
        statement = (
            f"INSERT INTO {self.table.name} (message_id, type, body, created_at)"
            " VALUES (?, ?, ?, ?)"
        )
        connection = transaction.driver._conn
        transaction.driver.defer(lambda: connection.execute(statement, row).close())
        transaction.after_commit(self._wake)
        return envelope

    def wakeup_event(self) -> asyncio.Event:
        event = asyncio.Event()
        self._listeners.append(event)
        return event

    def _wake(self) -> None:
        for event in self._listeners:
            event.set()


class OutboxRelay:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        outbox: Outbox,
        bus: Bus,
        *,
        poll_seconds: float = 0.5,
        batch: int = 500,
    ) -> None:
        self.sessions = sessions
        self.outbox = outbox
        self.table = outbox.table
        self.bus = bus
        self.poll_seconds = poll_seconds
        self.batch = batch
        self._wakeup = outbox.wakeup_event()
        self._task: asyncio.Task[None] | None = None
        self._lock_key = zlib.crc32(f"outbox:{outbox.producer}".encode())
        self._metric = RELAYED.labels(outbox.producer)
        # Without a lock (SQLite): publishes on their way, oldest first (their rows' ids and
        # the future `Bus.publish_in_turn` gave), and the last row id among them.
        self._in_flight: deque[tuple[list[int], asyncio.Future[None]]] = deque()
        self._queued_through: int | None = None

    async def relay_once(self) -> int:
        """Publish the next batch of unsent events in order; returns how many it took. Without
        the lock, up to `IN_FLIGHT` batches may still be on their way when it returns; one that
        took less than a whole batch (caught up) returns once every one is marked sent."""
        async with self.sessions() as session:
            if session.get_bind().dialect.name != "postgresql":
                return await self._relay_without_lock(session)
            async with session.begin():
                locked = await session.scalar(
                    text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": self._lock_key}
                )
                if not locked:
                    return 0
                rows = await self._unsent(session)
                if not rows:
                    return 0
                await self.bus.publish([Envelope.from_bytes(row.body) for row in rows])
                await self._mark_sent(session, [row.id for row in rows])
        self._metric.inc(len(rows))
        return len(rows)

    async def _relay_without_lock(self, session: AsyncSession) -> int:
        # SQLite is the embedded mode: one process, one relay per outbox, so no lock is needed
        # for the order. Holding no transaction while publishing matters there: the in-process
        # bus settles a publish once the consumers committed, and they may write to this same
        # database.
        async with session.begin():
            rows = await self._unsent(session, after=self._queued_through)
        if rows:
            try:
                settled = await self.bus.publish_in_turn(
                    [Envelope.from_bytes(row.body) for row in rows]
                )
            except Exception:
                self._forget_in_flight()
                raise
            self._in_flight.append(([row.id for row in rows], settled))
            self._queued_through = rows[-1].id
        # Mark what settled; wait for the oldest publish while the window is full, and for
        # every one once caught up (a caller then finds its rows marked).
        while self._in_flight:
            ids, settled = self._in_flight[0]
            if not settled.done() and len(self._in_flight) < IN_FLIGHT and len(rows) == self.batch:
                break
            try:
                await settled
            except Exception:
                self._forget_in_flight()
                raise
            self._in_flight.popleft()
            async with session.begin():
                await self._mark_sent(session, ids)
            self._metric.inc(len(ids))
        return len(rows)

    def _forget_in_flight(self) -> None:
        """After a failed publish (the in-process bus closing), the next round starts again
        from the first unsent row; the publishes still in flight are left to end on their
        own (a consumer's inbox drops the copies of those that reach it twice)."""
        for _, settled in self._in_flight:
            settled.add_done_callback(_retrieved)
        self._in_flight.clear()
        self._queued_through = None

    async def _unsent(
        self, session: AsyncSession, after: int | None = None
    ) -> Sequence[Row[Any, Any]]:
        query = select(self.table.c.id, self.table.c.body).where(self.table.c.sent_at.is_(None))
        if after is not None:
            query = query.where(self.table.c.id > after)
        result = await session.execute(query.order_by(self.table.c.id).limit(self.batch))
        return result.all()

    async def _mark_sent(self, session: AsyncSession, ids: list[int]) -> None:
        await session.execute(
            update(self.table).where(self.table.c.id.in_(ids)).values(sent_at=utcnow())
        )

    async def prune(self) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(
                delete(self.table).where(self.table.c.sent_at < utcnow() - SENT_RETENTION)
            )

    async def run(self) -> None:
        rounds = 0
        while True:
            self._wakeup.clear()
            try:
                published = await self.relay_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay failed; retrying", producer=self.outbox.producer)
                published = 0
                await asyncio.sleep(self.poll_seconds)
            rounds += 1
            if rounds % 1000 == 0:
                with contextlib.suppress(Exception):
                    await self.prune()
            if published < self.batch:
                await woken(self._wakeup, self.poll_seconds)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"outbox-relay-{self.outbox.producer}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        # What was on its way stays unsent: the next start publishes it again.
        self._forget_in_flight()


def _retrieved(settled: asyncio.Future[None]) -> None:
    # A failure nobody awaits any more is still retrieved: asyncio would log it as lost.
    if not settled.cancelled():
        settled.exception()
