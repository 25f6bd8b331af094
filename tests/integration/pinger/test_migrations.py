"""The hand-written migration creates exactly the tables the code declares; revisions that
change existing tables are tested up and down."""

from __future__ import annotations

import asyncio
import uuid

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from pingtower.common.db import create_engine, run_migrations
from pingtower.common.events import utcnow
from pingtower.pinger.store.database import MIGRATIONS
from pingtower.pinger.store.tables import heartbeats, metadata, monitors
from tests.integration.migrations import differences_after_migrating
from tests.integration.pinger.conftest import MakeUrl


async def test_migration_matches_the_models(make_db_url: MakeUrl) -> None:
    url = await make_db_url()
    assert await differences_after_migrating(url, MIGRATIONS, metadata) == []


def _downgrade(url: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.downgrade(config, revision)


async def test_heartbeats_get_a_next_look_indexed_and_lose_it_on_downgrade(
    make_db_url: MakeUrl,
) -> None:
    """Revision 0005: existing heartbeats are due at once (the watcher sets each one's next
    look); the downgrade drops the column and its index, keeping the rows."""
    url = await make_db_url()
    await asyncio.to_thread(run_migrations, url, MIGRATIONS, "pinger_0004")
    monitor_id, now = uuid.uuid4(), utcnow()
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                monitors.insert().values(
                    id=monitor_id,
                    tenant="acme",
                    name="nightly backup",
                    type="heartbeat",
                    target="push",
                    settings={},
                    tags=[],
                    interval_seconds=60,
                    timezone="UTC",
                    timeout_seconds=10.0,
                    regions=["default"],
                    failures_before_down=1,
                    successes_before_up=1,
                    retry_interval_seconds=20,
                    paused=False,
                    public=False,
                    created_at=now,
                    updated_at=now,
                )
            )
            old_heartbeats = sa.table(
                "heartbeats", sa.column("monitor_id", sa.Uuid()), sa.column("ping_key", sa.Uuid())
            )
            await conn.execute(
                old_heartbeats.insert().values(monitor_id=monitor_id, ping_key=uuid.uuid4())
            )

        def shape(sync: sa.Connection) -> tuple[set[str], set[str | None]]:
            inspector = sa.inspect(sync)
            columns = {column["name"] for column in inspector.get_columns("heartbeats")}
            indexes = {index["name"] for index in inspector.get_indexes("heartbeats")}
            return columns, indexes

        await asyncio.to_thread(run_migrations, url, MIGRATIONS, "head")
        await engine.dispose()
        async with engine.connect() as conn:
            columns, indexes = await conn.run_sync(shape)
            check_at = await conn.scalar(sa.select(heartbeats.c.check_at))
        assert "check_at" in columns
        assert "ix_heartbeats_check_at" in indexes
        assert check_at is not None
        assert check_at <= utcnow()
        await engine.dispose()

        await asyncio.to_thread(_downgrade, url, "pinger_0004")
        async with engine.connect() as conn:
            columns, indexes = await conn.run_sync(shape)
            kept = await conn.scalar(sa.select(sa.func.count()).select_from(sa.table("heartbeats")))
        assert "check_at" not in columns
        assert "ix_heartbeats_check_at" not in indexes
        assert kept == 1
        await engine.dispose()
        assert await differences_after_migrating(url, MIGRATIONS, metadata) == []
    finally:
        await engine.dispose()
