"""Inbox: a consumer records each message id in the same transaction as the message's effect,
so a redelivered message finds its id already there and changes nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import Counter
from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pingtower.common.db import UtcDateTime
from pingtower.common.events import Envelope, utcnow
from pingtower.common.messaging.bus import BatchHandler

DUPLICATES = Counter(
    "pingtower_inbox_duplicates_total", "Redelivered messages dropped by an inbox", ["consumer"]
)


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox",
        metadata,
        Column("consumer", String(100), nullable=False),
        Column("message_id", String(36), nullable=False),
        Column("processed_at", UtcDateTime, nullable=False),
        PrimaryKeyConstraint("consumer", "message_id"),
    )


EffectHandler = Callable[[AsyncSession, Sequence[Envelope]], Awaitable[None]]


class Inbox:
    def __init__(self, table: Table, consumer: str) -> None:
        self.table = table
        self.consumer = consumer
        self._duplicates = DUPLICATES.labels(consumer)

    async def claim(self, session: AsyncSession, envelope: Envelope) -> bool:
        """Record the message as processed; False if it already was (a redelivery)."""
        values = {
            "consumer": self.consumer,
            "message_id": str(envelope.id),
            "processed_at": utcnow(),
        }
        insert = (
            postgresql.insert(self.table)
            if session.get_bind().dialect.name == "postgresql"
            else sqlite.insert(self.table)
        )
        result = await session.execute(insert.values(**values).on_conflict_do_nothing())
        claimed = bool(result.rowcount)  # type: ignore[attr-defined]
        if not claimed:
            self._duplicates.inc()
        return claimed

    def handler(
        self, sessions: async_sessionmaker[AsyncSession], effect: EffectHandler
    ) -> BatchHandler:
        """Wrap `effect` to run in one transaction with the inbox, for new messages only."""

        async def handle(batch: Sequence[Envelope]) -> None:
            async with sessions() as session, session.begin():
                fresh = [envelope for envelope in batch if await self.claim(session, envelope)]
                if fresh:
                    await effect(session, fresh)

        return handle

    async def prune(self, session: AsyncSession, older_than_days: int = 7) -> None:
        from datetime import timedelta

        await session.execute(
            delete(self.table).where(
                self.table.c.consumer == self.consumer,
                self.table.c.processed_at < utcnow() - timedelta(days=older_than_days),
            )
        )
