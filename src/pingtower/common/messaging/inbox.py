"""Inbox: a consumer records each message id in the same transaction as the message's effect,
so a redelivered message finds its id already there and changes nothing.

A consumer whose effect stores a fact under the fact's own key needs no inbox row for it
(`Inbox.handler`'s `keyed_by_effect`): statistics' results; the Pinger's evaluator has no
inbox at all (its results are keyed).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

import structlog
from prometheus_client import Counter
from sqlalchemy import (
    Column,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    TextClause,
    bindparam,
    delete,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.types import TypeEngine

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
        # The batch's ids go as one parameter, so the statement is the same whatever the batch
        # size: PostgreSQL prepares it once per connection (a VALUES list of every batch size
        # is parsed and planned anew), and SQLAlchemy builds and converts no parameter row per
        # message (on SQLite that was most of a claim's cost: ~45 us a message, now ~10).
        self._claim_pg = _claim_statement(
            table, "claimed.id FROM unnest(:ids) AS claimed(id)", postgresql.ARRAY(String())
        )
        # SQLite reads them from a JSON array; `WHERE true` keeps its parser from taking the
        # ON CONFLICT for the ON of a join.
        self._claim_sqlite = _claim_statement(
            table, "claimed.value FROM json_each(:ids) AS claimed WHERE true", String()
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
        claimed = await self._claim(session, unique, len(batch))
        return [envelope for message_id, envelope in unique.items() if message_id in claimed]

    async def _claim(
        self, session: AsyncSession, unique: dict[str, Envelope], given: int
    ) -> set[str]:
        """The ids of `unique` (the batch's messages by id) not claimed before; `given`: how
        many messages the batch held, copies included."""
        ids: list[str] | str = list(unique)
        statement = self._claim_pg
        if session.get_bind().dialect.name != "postgresql":
            statement, ids = self._claim_sqlite, json.dumps(ids)
        result = await session.execute(
            statement, {"consumer": self.consumer, "now": utcnow(), "ids": ids}
        )
        return self._counted(set(result.scalars()), given)

    def _counted(self, claimed: set[str], given: int) -> set[str]:
        """`claimed` (the ids a claim found new), the batch's copies and redeliveries counted:
        `given` messages were claimed."""
        duplicates = given - len(claimed)
        if duplicates:
            self._duplicates.inc(duplicates)
        return claimed

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
            # The messages to claim, by id (a message given twice, once)
            unique: dict[str, Envelope] = {}
            given = 0
            for message_id, envelope in zip(ids, batch, strict=True):
                if envelope.type not in by_effect:
                    unique.setdefault(message_id, envelope)
                    given += 1
            with structlog.contextvars.bound_contextvars(consumer=self.consumer, message_ids=ids):
                async with sessions() as session, session.begin():
                    if not unique:
                        fresh = list(batch)
                    else:
                        new = await self._claim(session, unique, given)
                        # In batch order; a message given twice goes once
                        fresh = []
                        for message_id, envelope in zip(ids, batch, strict=True):
                            if envelope.type in by_effect:
                                fresh.append(envelope)
                            elif message_id in new:
                                new.discard(message_id)
                                fresh.append(envelope)
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


def _claim_statement(table: Table, ids: str, ids_type: TypeEngine[Any]) -> TextClause:
    """INSERT the ids the parameter `ids` holds, returning those new; `ids`: the id column
    and the FROM clause reading them from the parameter."""
    return text(
        f"INSERT INTO {table.name} (consumer, processed_at, message_id) "
        f"SELECT :consumer, :now, {ids} ON CONFLICT DO NOTHING RETURNING message_id"
    ).bindparams(
        bindparam("consumer", type_=String()),
        bindparam("now", type_=UtcDateTime()),
        bindparam("ids", type_=ids_type),
    )
