"""Inbox: a consumer records each message id in the same transaction as the message's effect,
so a redelivered message finds its id already there and changes nothing.

On SQLite an effect may run the claim itself (`Inbox.handler`'s `claimed_by`), as the first
statement of its first trip to SQLite's thread, and learn from it which messages are new: the
Pinger's evaluator reads its state rows in that trip, where the claim was a trip of its own
(bench/README.md, performance round 7). Such an effect works on the driver connection alone,
in a `plain_transaction` without SQLAlchemy's Session (performance round 8).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
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
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.types import TypeEngine

from pingtower.common.db import UtcDateTime
from pingtower.common.events import Envelope, utcnow
from pingtower.common.messaging.bus import BatchHandler
from pingtower.common.sqlite_driver import PlainTransaction, plain_transaction
from pingtower.common.sqlite_values import utc_text

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


class Claim:
    """A batch's claim, for an effect that runs it itself on SQLite: `statement` with
    `parameters` (plain values, as SQLAlchemy would store them), run in the effect's
    transaction before anything else, returns one row per new message, its id; `fresh` makes
    of those rows the messages to apply, in batch order, a message given twice once."""

    def __init__(self, inbox: Inbox, unique: dict[str, Envelope], given: int) -> None:
        """`unique`: the batch's messages by id, in batch order; `given`: how many the batch
        held, copies included."""
        self._inbox = inbox
        self._given = given
        self.unique = unique
        self.statement = inbox._claim_plain
        self.parameters = (inbox.consumer, utc_text(utcnow()), json.dumps(list(self.unique)))

    def fresh(self, rows: Iterable[Sequence[Any]]) -> list[Envelope]:
        claimed = self._inbox._counted({row[0] for row in rows}, self._given)
        return [envelope for message_id, envelope in self.unique.items() if message_id in claimed]


ClaimingEffect = Callable[[PlainTransaction, Claim], Awaitable[None]]


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
        self._claim_plain = _claim_sql(
            table, "?", "?", "claimed.value FROM json_each(?) AS claimed WHERE true"
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
        claimed_by: ClaimingEffect | None = None,
        engine: AsyncEngine | None = None,
    ) -> BatchHandler:
        """Wrap `effect` to run in one transaction with the inbox, for new messages only.

        `keyed_by_effect`: message types whose effect drops a redelivery by itself (it stores
        the fact under the fact's own key, so it finds it already there); they go to `effect`
        without an inbox row, which saves the consumer a statement per batch of them.

        `claimed_by`: if `engine` (that of `sessions`) is SQLite's, the batch goes to this
        effect instead, in a `plain_transaction` on `engine`, with its `Claim` to run first
        in the transaction (on another database `effect` gets the new messages)."""
        if claimed_by is not None and keyed_by_effect:
            raise ValueError("an effect that runs the claim takes every message type")
        if claimed_by is not None and engine is None:
            raise ValueError("an effect that runs the claim needs the engine")
        by_effect = frozenset(keyed_by_effect)
        plain = claimed_by if engine is not None and engine.dialect.name == "sqlite" else None

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
                if plain is not None and engine is not None:
                    async with plain_transaction(engine) as transaction:
                        await plain(transaction, Claim(self, unique, given))
                    return
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
    return text(_claim_sql(table, ":consumer", ":now", ids)).bindparams(
        bindparam("consumer", type_=String()),
        bindparam("now", type_=UtcDateTime()),
        bindparam("ids", type_=ids_type),
    )


def _claim_sql(table: Table, consumer: str, now: str, ids: str) -> str:
    """The claim's SQL with its parameters written as `consumer`, `now` and `ids` (the id
    column and the FROM clause reading them): named for SQLAlchemy, `?` for the plain driver."""
    return (
        f"INSERT INTO {table.name} (consumer, processed_at, message_id) "
        f"SELECT {consumer}, {now}, {ids} ON CONFLICT DO NOTHING RETURNING message_id"
    )
