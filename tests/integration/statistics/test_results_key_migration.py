"""Revision 0006 keys raw results by (finished_at, check_id) and drops their two other indexes,
keeping every row as it was (ids too), on both databases; a replay still finds its result, and
the downgrade brings the old key and indexes back."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from pingtower.common import db
from pingtower.statistics.service import MIGRATIONS
from pingtower.statistics.store import partitions, tables
from tests.integration.statistics.test_histogram_migration import downgrade

START = datetime(2026, 11, 10, 12, tzinfo=UTC)


def result(i: int, check_id: uuid.UUID) -> dict[str, Any]:
    finished = START + timedelta(seconds=20 * i)
    return {
        "tenant": "acme",
        "check_id": check_id,
        "monitor_id": uuid.UUID(int=i % 2 + 1, version=4),
        "region": "eu",
        "scheduled_at": finished - timedelta(milliseconds=200),
        "started_at": finished - timedelta(milliseconds=150),
        "finished_at": finished,
        "outcome": "up" if i % 3 else "down",
        "latency_ms": None if i % 3 == 0 else 12.5 * i,
        "error_kind": "timeout" if i % 3 == 0 else None,
        "status_code": 200,
        "phases": {"dns": 1.0 + i, "connect": 3.5},
    }


async def stored(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as connection:
        found = await connection.execute(sa.select(tables.results).order_by(tables.results.c.id))
        return [tuple(row) for row in found]


async def keys(engine: AsyncEngine) -> tuple[list[tuple[str, list[str]]], set[str]]:
    """The results' unique constraints (name, columns in order) and its other indexes."""

    def read(connection: Any) -> tuple[list[tuple[str, list[str]]], set[str]]:
        inspector = sa.inspect(connection)
        unique = [
            (u["name"], list(u["column_names"]))
            for u in inspector.get_unique_constraints("results")
        ]
        names = {name for name, _ in unique}
        indexes = {i["name"] for i in inspector.get_indexes("results")} - names
        return unique, {name for name in indexes if name is not None}

    async with engine.connect() as connection:
        return await connection.run_sync(read)


async def day_partition_indexes(engine: AsyncEngine) -> list[list[str]]:
    """PostgreSQL: the columns of each index of the day's partition (its primary key aside)."""

    def read(connection: Any) -> list[list[str]]:
        found = sa.inspect(connection).get_indexes(partitions.partition_name(START.date()))
        return sorted(list(index["column_names"]) for index in found)

    async with engine.connect() as connection:
        return await connection.run_sync(read)


async def test_results_are_keyed_time_first_with_no_other_index_and_back(
    database_url: str,
) -> None:
    shared = uuid.uuid4()  # one check id at two finish times: two results
    rows = [result(i, shared if i < 2 else uuid.uuid4()) for i in range(5)]
    await asyncio.to_thread(db.run_migrations, database_url, MIGRATIONS, "0005")
    engine = db.create_engine(database_url)
    postgres = engine.dialect.name == "postgresql"
    try:
        async with engine.begin() as connection:
            if postgres:  # the rows in a day's partition, made at run time as the service does
                async with AsyncSession(connection) as session:
                    await partitions.ensure(session, START.date(), days_ahead=0)
            await connection.execute(tables.results.insert(), rows)
        before = await stored(engine)
        assert len(before) == 5
        assert await keys(engine) == (
            [("uq_results_check", ["check_id", "finished_at"])],
            {"ix_results_monitor_time", "ix_results_time"},
        )
        await engine.dispose()

        await asyncio.to_thread(db.run_migrations, database_url, MIGRATIONS, "0006")
        assert await stored(engine) == before
        assert await keys(engine) == ([("uq_results_check", ["finished_at", "check_id"])], set())
        if postgres:
            assert await day_partition_indexes(engine) == [["finished_at", "check_id"]]
        insert = sa.dialects.postgresql.insert if postgres else sa.dialects.sqlite.insert
        replay = insert(tables.results).on_conflict_do_nothing(
            index_elements=["check_id", "finished_at"]
        )
        async with engine.begin() as connection:
            again = await connection.execute(replay, [rows[1]])
            assert again.rowcount == 0
        assert await stored(engine) == before
        await engine.dispose()

        await asyncio.to_thread(downgrade, database_url, "0005")
        assert await stored(engine) == before
        assert await keys(engine) == (
            [("uq_results_check", ["check_id", "finished_at"])],
            {"ix_results_monitor_time", "ix_results_time"},
        )
        if postgres:
            assert await day_partition_indexes(engine) == [
                ["check_id", "finished_at"],
                ["finished_at"],
                ["monitor_id", "finished_at"],
            ]
    finally:
        await engine.dispose()


async def test_retention_reads_the_results_key_on_sqlite(sqlite_url: str) -> None:
    """Pruning raw results (finished before a time) searches the key, not the whole table."""
    await asyncio.to_thread(db.run_migrations, sqlite_url, MIGRATIONS)
    engine = db.create_engine(sqlite_url)
    try:
        ids = sa.select(tables.results.c.id).where(tables.results.c.finished_at < START)
        statement = ids.limit(1000).compile(engine.sync_engine)
        async with engine.connect() as connection:
            plan = await connection.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {statement}", tuple(statement.params.values())
            )
            details = " ".join(str(row[-1]) for row in plan)
        assert "SEARCH results USING COVERING INDEX" in details
        assert "(finished_at<?)" in details
    finally:
        await engine.dispose()
