"""A tiny test-only service schema: a producer's `things` table whose rows cause `thing.created`
events through the outbox, and a consumer's `effects` table written through the inbox.

Both sides use the same MetaData (each in its own database), as a real service's would hold its
own tables plus the outbox and the inbox.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import ClassVar

from sqlalchemy import Column, Integer, MetaData, String, Table, Uuid, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from pingtower.common.db import BigId
from pingtower.common.events import Contract, Envelope
from pingtower.common.messaging.inbox import inbox_table
from pingtower.common.messaging.outbox import Outbox, outbox_table

metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant", String(100), nullable=False),
    Column("name", String(100), nullable=False),
)
# No unique key on purpose: a second effect of one message would show up as a second row.
effects = Table(
    "effects",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("message_id", String(36), nullable=False),
    Column("thing_id", Uuid, nullable=False),
    Column("seq", Integer, nullable=False),
)
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)


class ThingCreated(Contract):
    TYPE: ClassVar[str] = "thing.created"
    thing_id: uuid.UUID
    name: str
    seq: int = 0


async def create_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)


async def create_thing(
    sessions: async_sessionmaker[AsyncSession], producer: Outbox, name: str, seq: int = 0
) -> Envelope:
    """The producer's use case: a change and its event, in one transaction."""
    thing_id = uuid.uuid4()
    async with sessions() as session, session.begin():
        await session.execute(things.insert().values(id=thing_id, tenant="acme", name=name))
        return await producer.add(
            session, ThingCreated(thing_id=thing_id, name=name, seq=seq), tenant="acme"
        )


async def record_effects(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
    """The consumer's effect, applied inside the inbox's transaction."""
    for envelope in envelopes:
        await session.execute(
            effects.insert().values(
                message_id=str(envelope.id),
                thing_id=uuid.UUID(envelope.payload["thing_id"]),
                seq=envelope.payload["seq"],
            )
        )


async def effect_count(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return (await session.scalar(select(func.count()).select_from(effects))) or 0


async def effect_sequence(sessions: async_sessionmaker[AsyncSession]) -> list[int]:
    async with sessions() as session:
        return list((await session.scalars(select(effects.c.seq).order_by(effects.c.id))).all())
