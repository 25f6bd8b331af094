"""The hand-written migrations create exactly the tables the code declares."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from pingtower.common.db import create_engine, migrate
from pingtower.notificator.service import MIGRATIONS
from pingtower.notificator.store.tables import metadata


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_the_migrations_match_the_models(database_url: str) -> None:
    await migrate(database_url, MIGRATIONS)
    await migrate(database_url, MIGRATIONS)  # a second run is a no-op
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_differences)
    finally:
        await engine.dispose()
    assert differences == []
