"""Inbox: a consumer records each message id in the same transaction as the message's effect,
so a redelivered message finds its id already there and changes nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence

import structlog
from prometheus_client import Counter
from sqlalchemy import (
    Column,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    bindparam,
    delete,
    text,
)
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
        # PostgreSQL gets the batch's ids as one array: one statement prepared once per
        # connection, where a VALUES list of every batch size is parsed and planned anew.
        self._claim_pg = text(
            f"INSERT INTO {table.name} (consumer, message_id, processed_at) "
            "SELECT :consumer, claimed.id, :now FROM unnest(:ids) AS claimed(id) "
            "ON CONFLICT DO NOTHING RETURNING message_id"
        ).bindparams(
            bindparam("consumer", type_=String()),
            bindparam("now", type_=UtcDateTime()),
            bindparam("ids", type_=postgresql.ARRAY(String())),
        )

    async def claim(self, session: AsyncSession, envelope: Envelope) -> bool:
        """Record the message as processed; False if it already was (a redelivery)."""
        return bool(await self.claim_batch(session, [envelope]))

    async def claim_batch(self, session: AsyncSession, batch: Sequence[Envelope]) -> list[Envelope]:
        """Record every message of the batch; return those not seen before, in batch order.

        One INSERT ... ON CONFLICT DO NOTHING RETURNING for the whole batch: a round trip per
        message capped ingest near a thousand messages a second.
        """
        unique: dict[str, Envelope] = {}
        for envelope in batch:
            unique.setdefault(str(envelope.id), envelope)
        now = utcnow()
        if session.get_bind().dialect.name == "postgresql":
            result = await session.execute(
                self._claim_pg, {"consumer": self.consumer, "now": now, "ids": list(unique)}
            )
        else:
            result = await session.execute(
                sqlite.insert(self.table)
                .on_conflict_do_nothing()
                .returning(self.table.c.message_id),
                [
                    {"consumer": self.consumer, "message_id": message_id, "processed_at": now}
                    for message_id in unique
                ],
            )
        claimed = set(result.scalars())
        duplicates = len(batch) - len(claimed)
        if duplicates:
            self._duplicates.inc(duplicates)
        return [envelope for message_id, envelope in unique.items() if message_id in claimed]

    def handler(
        self,
        sessions: async_sessionmaker[AsyncSession],
        effect: EffectHandler,
        *,
        keyed_by_effect: Collection[str] = (),
    ) -> BatchHandler:
        """Wrap `effect` to run in one transaction with the inbox, for new messages only.

        `keyed_by_effect`: message types whose effect drops a redelivery by itself (it stores
        the fact under the fact's own key, so it finds it already there); they go to `effect`
        without an inbox row, which saves the consumer a statement per batch of them."""
        by_effect = frozenset(keyed_by_effect)

        async def handle(batch: Sequence[Envelope]) -> None:
            ids = [str(envelope.id) for envelope in batch]
            with structlog.contextvars.bound_contextvars(consumer=self.consumer, message_ids=ids):
                async with sessions() as session, session.begin():
                    claimed = [e for e in batch if e.type not in by_effect]
                    if claimed:
                        new = {e.id for e in await self.claim_batch(session, claimed)}
                        fresh = []
                        for envelope in batch:
                            if envelope.type in by_effect:
                                fresh.append(envelope)
                            elif envelope.id in new:
                                new.discard(envelope.id)  # a message given twice goes once
                                fresh.append(envelope)
                    else:
                        fresh = list(batch)
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
