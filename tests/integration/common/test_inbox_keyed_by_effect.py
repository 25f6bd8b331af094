"""The inbox handler's `keyed_by_effect`: those message types reach the effect without an inbox
row (their effect drops a redelivery itself); every other type is still claimed, once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import ClassVar

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pingtower.common.db import create_engine, session_factory
from pingtower.common.events import Contract, Envelope
from pingtower.common.messaging.inbox import Inbox
from tests.integration.common.things import ThingCreated, create_tables, inbox


class ThingMeasured(Contract):
    TYPE: ClassVar[str] = "thing.measured"
    thing_id: uuid.UUID


@pytest.fixture(params=["sqlite", "postgresql"])
def make_url(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Awaitable[str]]:
    # Synchronous on purpose: only outside the event loop can a fixture ask for the server
    # fixture that the PostgreSQL parameter needs.
    if request.param == "postgresql":
        make: Callable[[], Awaitable[str]] = request.getfixturevalue("make_pg_database")
        return make

    async def sqlite_url() -> str:
        return f"sqlite+aiosqlite:///{tmp_path}/consumer.sqlite3"

    return sqlite_url


@pytest.fixture
async def sessions(
    make_url: Callable[[], Awaitable[str]],
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(await make_url())
    await create_tables(engine)
    yield session_factory(engine)
    await engine.dispose()


def _wrap(event: Contract) -> Envelope:
    return Envelope.wrap(event, producer="things", tenant="acme")


async def test_keyed_types_skip_the_inbox_and_others_are_claimed_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    thing = uuid.uuid4()
    created = _wrap(ThingCreated(thing_id=thing, name="a"))
    measured, measured_again = (
        _wrap(ThingMeasured(thing_id=thing)),
        _wrap(ThingMeasured(thing_id=thing)),
    )
    seen: list[list[uuid.UUID]] = []

    async def effect(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
        seen.append([envelope.id for envelope in envelopes])

    consumer = f"things-{uuid.uuid4().hex[:8]}"  # its own duplicates counter
    handle = Inbox(inbox, consumer=consumer).handler(
        sessions, effect, keyed_by_effect=[ThingMeasured.TYPE]
    )

    await handle([created, measured, created, measured_again])
    await handle([created, measured])  # redelivered: only the keyed one goes through again
    await handle([created])  # nothing new: the effect is not called

    assert seen == [
        [created.id, measured.id, measured_again.id],  # the doubled message once, in order
        [measured.id],
    ]
    async with sessions() as session:
        claimed = await session.scalars(select(inbox.c.message_id))
        assert list(claimed) == [str(created.id)]
        assert await session.scalar(select(func.count()).select_from(inbox)) == 1
    # Copies of claimed messages only: the keyed ones are never counted as duplicates
    duplicates = REGISTRY.get_sample_value(
        "pingtower_inbox_duplicates_total", {"consumer": consumer}
    )
    assert duplicates == 3
