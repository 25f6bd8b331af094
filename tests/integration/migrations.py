"""The check every service's migration test makes: its hand-written Alembic tree, run twice,
creates exactly the tables its code declares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, MetaData

from pingtower.common.db import create_engine, migrate


async def differences_after_migrating(
    database_url: str, migrations: Path, metadata: MetaData
) -> list[Any]:
    """Alembic's differences between the migrated database and `metadata` (none is a match);
    the second run of the migrations must be a no-op."""
    await migrate(database_url, migrations)
    await migrate(database_url, migrations)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:

            def compare(sync: Connection) -> list[Any]:
                context = MigrationContext.configure(sync, opts={"compare_type": True})
                return list(compare_metadata(context, metadata))

            return await connection.run_sync(compare)
    finally:
        await engine.dispose()
