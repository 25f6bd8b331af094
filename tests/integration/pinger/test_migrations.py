"""The hand-written migration creates exactly the tables the code declares; revisions that
change existing tables are tested up and down."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from pingtower.common.db import UtcDateTime, create_engine, run_migrations
from pingtower.common.events import utcnow
from pingtower.pinger.store.database import MIGRATIONS
from pingtower.pinger.store.tables import (
    check_results,
    heartbeats,
    metadata,
    monitor_states,
    monitors,
)
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


def monitor_row(monitor_id: uuid.UUID, type_: str) -> dict[str, object]:
    """A monitor's row as every revision since 0004 has the table."""
    now = utcnow()
    return {
        "id": monitor_id,
        "tenant": "acme",
        "name": f"{type_} {monitor_id}",
        "type": type_,
        "target": "push" if type_ == "heartbeat" else "http://127.0.0.1/",
        "settings": {},
        "tags": [],
        "interval_seconds": 60,
        "timezone": "UTC",
        "timeout_seconds": 10.0,
        "regions": ["default"],
        "failures_before_down": 1,
        "successes_before_up": 1,
        "retry_interval_seconds": 20,
        "paused": False,
        "public": False,
        "created_at": now,
        "updated_at": now,
    }


async def test_heartbeats_get_a_next_look_indexed_and_lose_it_on_downgrade(
    make_db_url: MakeUrl,
) -> None:
    """Revision 0005: existing heartbeats are due at once (the watcher sets each one's next
    look); the downgrade drops the column and its index, keeping the rows."""
    url = await make_db_url()
    await asyncio.to_thread(run_migrations, url, MIGRATIONS, "pinger_0004")
    monitor_id = uuid.uuid4()
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(monitors.insert().values(monitor_row(monitor_id, "heartbeat")))
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


async def test_existing_results_are_chained_and_the_index_by_monitor_goes(
    make_db_url: MakeUrl,
) -> None:
    """Revision 0006: each stored result names its monitor's previous one and each state row
    its monitor's newest (none for a monitor without results); the index by monitor goes.
    The downgrade puts the index back and drops both columns, keeping the rows."""
    url = await make_db_url()
    await asyncio.to_thread(run_migrations, url, MIGRATIONS, "pinger_0005")
    a, b, idle, now = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), utcnow()
    old_states = sa.table(
        "monitor_states",
        *(sa.column(name) for name in ("tenant", "status", "consecutive_failures")),
        *(sa.column(name) for name in ("consecutive_successes",)),
        sa.column("monitor_id", sa.Uuid()),
        sa.column("changed_at", UtcDateTime()),
    )
    old_results = sa.table(
        "check_results",
        *(sa.column(name) for name in ("id", "tenant", "region", "outcome", "phases_ms")),
        sa.column("check_id", sa.Uuid()),
        sa.column("monitor_id", sa.Uuid()),
        *(sa.column(name, UtcDateTime()) for name in ("scheduled_at", "started_at")),
        sa.column("finished_at", UtcDateTime()),
    )
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for monitor_id in (a, b, idle):
                await conn.execute(monitors.insert().values(monitor_row(monitor_id, "http")))
                await conn.execute(
                    old_states.insert().values(
                        monitor_id=monitor_id,
                        tenant="acme",
                        status="up",
                        consecutive_failures=0,
                        consecutive_successes=1,
                        changed_at=now,
                    )
                )
            for id_, monitor_id in enumerate((a, b, a, a, b), start=1):
                await conn.execute(
                    old_results.insert().values(
                        id=id_,
                        check_id=uuid.uuid4(),
                        monitor_id=monitor_id,
                        tenant="acme",
                        region="default",
                        scheduled_at=now,
                        started_at=now,
                        finished_at=now,
                        outcome="up",
                        phases_ms="{}",
                    )
                )

        def indexes(sync: sa.Connection) -> set[str | None]:
            return {index["name"] for index in sa.inspect(sync).get_indexes("check_results")}

        await asyncio.to_thread(run_migrations, url, MIGRATIONS, "head")
        await engine.dispose()
        async with engine.connect() as conn:
            chained = await conn.execute(sa.select(check_results.c.id, check_results.c.previous_id))
            previous = dict(chained.all())
            stored = await conn.execute(
                sa.select(monitor_states.c.monitor_id, monitor_states.c.last_stored_result_id)
            )
            heads = dict(stored.all())
            after = await conn.run_sync(indexes)
        assert previous == {1: None, 2: None, 3: 1, 4: 3, 5: 2}
        assert heads == {a: 4, b: 5, idle: None}
        assert "ix_check_results_monitor" not in after
        await engine.dispose()

        await asyncio.to_thread(_downgrade, url, "pinger_0005")
        async with engine.connect() as conn:
            before = await conn.run_sync(indexes)
            kept = await conn.scalar(sa.select(sa.func.count()).select_from(old_results))
        assert "ix_check_results_monitor" in before
        assert kept == 5
        await engine.dispose()
        assert await differences_after_migrating(url, MIGRATIONS, metadata) == []
    finally:
        await engine.dispose()


async def test_results_get_a_unique_key_and_the_inbox_goes(make_db_url: MakeUrl) -> None:
    """Revision 0007: the results' key (finished_at, check_id) is unique, in place of the index
    on finished_at alone, and the inbox table goes with its rows; the stored results stay.
    The downgrade brings back the index and an empty inbox."""
    url = await make_db_url()
    await asyncio.to_thread(run_migrations, url, MIGRATIONS, "pinger_0006")
    monitor_id, now = uuid.uuid4(), utcnow()
    old_inbox = sa.table(
        "inbox",
        sa.column("consumer"),
        sa.column("message_id"),
        sa.column("processed_at", UtcDateTime()),
    )
    row = {
        "check_id": uuid.uuid4(),
        "monitor_id": monitor_id,
        "tenant": "acme",
        "region": "default",
        "scheduled_at": now,
        "started_at": now,
        "finished_at": now,
        "outcome": "up",
        "phases_ms": {},
    }
    engine = create_engine(url)

    def schema(sync: sa.Connection) -> tuple[dict[str | None, tuple[bool, list[str | None]]], bool]:
        inspector = sa.inspect(sync)
        found = {
            index["name"]: (bool(index["unique"]), index["column_names"])
            for index in inspector.get_indexes("check_results")
        }
        return found, inspector.has_table("inbox")

    try:
        async with engine.begin() as conn:
            await conn.execute(monitors.insert().values(monitor_row(monitor_id, "http")))
            await conn.execute(check_results.insert().values(row))
            await conn.execute(check_results.insert().values({**row, "check_id": uuid.uuid4()}))
            await conn.execute(
                old_inbox.insert().values(
                    consumer="pinger.evaluator", message_id=str(uuid.uuid4()), processed_at=now
                )
            )
        await engine.dispose()

        await asyncio.to_thread(run_migrations, url, MIGRATIONS, "head")
        async with engine.connect() as conn:
            indexes, has_inbox = await conn.run_sync(schema)
            kept = await conn.scalar(sa.select(sa.func.count()).select_from(check_results))
        assert indexes["uq_check_results_key"] == (True, ["finished_at", "check_id"])
        assert "ix_check_results_finished_at" not in indexes
        assert not has_inbox
        assert kept == 2
        with pytest.raises(sa.exc.IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(check_results.insert().values(row))
        await engine.dispose()

        await asyncio.to_thread(_downgrade, url, "pinger_0006")
        async with engine.connect() as conn:
            indexes, has_inbox = await conn.run_sync(schema)
            claims = await conn.scalar(sa.select(sa.func.count()).select_from(old_inbox))
        assert indexes["ix_check_results_finished_at"] == (False, ["finished_at"])
        assert "uq_check_results_key" not in indexes
        assert has_inbox
        assert claims == 0
        await engine.dispose()
        assert await differences_after_migrating(url, MIGRATIONS, metadata) == []
    finally:
        await engine.dispose()
