"""The hand-written migration creates exactly the tables the code declares."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from pingtower.common.db import create_engine, migrate
from pingtower.pinger.store.database import MIGRATIONS
from pingtower.pinger.store.tables import metadata
from tests.integration.pinger.conftest import MakeUrl


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_migration_matches_the_models(make_db_url: MakeUrl) -> None:
    url = await make_db_url()
    await migrate(url, MIGRATIONS)
    await migrate(url, MIGRATIONS)  # a second run is a no-op
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_differences)
    finally:
        await engine.dispose()
    assert differences == []
