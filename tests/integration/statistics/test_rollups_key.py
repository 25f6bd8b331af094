"""Rollup cells are keyed time first (revision 0007), hour and day cells indexed by monitor: the
migration keeps every cell, both ways, on both databases; and on SQLite every read of a
monitor's cells finds them by key or through that index, never by time alone across every
monitor's cells (a minute's are looked up minute by minute, an hour cell's read with the
index's condition)."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from pingtower.common import db
from pingtower.statistics.domain.histogram import Histogram
from pingtower.statistics.service import MIGRATIONS
from pingtower.statistics.store import tables
from tests.integration.statistics.conftest import Clock, harness
from tests.integration.statistics.story import (
    NOV9,
    NOV10,
    SHOP,
    H,
    M,
    check,
    everything,
    feed,
    get,
    wrap,
)
from tests.integration.statistics.test_histogram_migration import downgrade


def cell(i: int) -> dict[str, Any]:
    resolution = ("minute", "hour", "day")[i % 3]
    return {
        "monitor_id": uuid.UUID(int=i % 4 + 1, version=4),
        "region": "eu" if i % 2 else "us",
        "resolution": resolution,
        "bucket_start": NOV9 + i * {"minute": M, "hour": H, "day": 24 * H}[resolution],
        "tenant": "acme",
        "up": i,
        "degraded": 0,
        "down": 1,
        "latency_count": i,
        "latency_min": 1.0,
        "latency_max": 2.0 + i,
        "latency_sum": 3.5 * i,
        "phase_sums": {"dns": 1.5},
        "phase_counts": {"dns": 1},
        "histogram": latencies(1.0, 2.0 + i).to_bytes(),
    }


def latencies(*values: float) -> Histogram:
    found = Histogram()
    for value in values:
        found.add(value)
    return found


async def stored(engine: AsyncEngine) -> list[Any]:
    r = tables.rollups.c
    async with engine.connect() as connection:
        found = await connection.execute(
            sa.select(tables.rollups).order_by(r.monitor_id, r.resolution, r.bucket_start)
        )
        return [tuple(row) for row in found]


async def keys(engine: AsyncEngine) -> tuple[list[str], dict[str, list[str]]]:
    """The rollups' primary key columns in order, and its indexes' columns by name."""

    def read(connection: Any) -> tuple[list[str], dict[str, list[str]]]:
        inspector = sa.inspect(connection)
        key = inspector.get_pk_constraint("rollups")["constrained_columns"]
        indexes = {i["name"]: list(i["column_names"]) for i in inspector.get_indexes("rollups")}
        return list(key), {str(name): columns for name, columns in indexes.items()}

    async with engine.connect() as connection:
        return await connection.run_sync(read)


MONITOR_FIRST = (
    ["monitor_id", "resolution", "bucket_start", "region"],
    {"ix_rollups_time": ["resolution", "bucket_start"]},
)
TIME_FIRST = (
    ["resolution", "bucket_start", "monitor_id", "region"],
    {"ix_rollups_monitor": ["monitor_id", "resolution", "bucket_start"]},
)


async def test_rollups_are_keyed_time_first_and_back_with_every_cell_kept(
    database_url: str,
) -> None:
    await asyncio.to_thread(db.run_migrations, database_url, MIGRATIONS, "0006")
    engine = db.create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(tables.rollups.insert(), [cell(i) for i in range(12)])
        before = await stored(engine)
        assert len(before) == 12
        assert await keys(engine) == MONITOR_FIRST
        await engine.dispose()

        with capture_logs() as said:
            await asyncio.to_thread(db.run_migrations, database_url, MIGRATIONS, "0007")
        assert await stored(engine) == before
        copying = [e for e in said if e["event"].startswith("copying the rollup cells")]
        # SQLite copies the table, and says how many cells before the statement that copies
        assert [e["cells"] for e in copying] == ([12] if db.is_sqlite(database_url) else [])
        assert await keys(engine) == TIME_FIRST
        async with engine.begin() as connection:  # the key still refuses a second cell
            with pytest.raises(sa.exc.IntegrityError):
                await connection.execute(tables.rollups.insert(), [cell(5)])
        await engine.dispose()

        await asyncio.to_thread(downgrade, database_url, "0006")
        assert await stored(engine) == before
        assert await keys(engine) == MONITOR_FIRST
    finally:
        await engine.dispose()


class Recorded(sqlite3.Cursor):
    """A cursor that keeps each statement it runs with its parameters."""

    statements: list[tuple[str, Any]] = []

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        Recorded.statements.append((sql, parameters))
        return super().execute(sql, parameters)


class Recording(sqlite3.Connection):
    def cursor(self, factory: Any = Recorded) -> Any:  # type: ignore[override]
        return super().cursor(factory)


async def test_reads_of_a_monitors_cells_search_by_monitor_on_sqlite(
    sqlite_url: str, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: connect(*a, **k, factory=Recording))
    monkeypatch.setattr(Recorded, "statements", [])
    async with harness(sqlite_url, tmp_path, Clock(NOV10 + 12 * H), background=False) as stats:
        # minute cells from 08:00 to 09:00 and at 11:59, which compaction leaves unfolded
        await feed(stats, [*everything(), wrap(check(239, 5.0))])
        assert await stats.service.compact() >= 1
        Recorded.statements.clear()
        await get(stats, "/overview")
        await get(stats, f"/monitors/{SHOP}/uptime", window="24h")
        await get(
            stats, f"/monitors/{SHOP}/uptime", **{"from": (NOV10 + 7 * H + 50 * M).isoformat()}
        )
        for step, start in (("1h", NOV10), ("5m", NOV10 + 7 * H), ("1d", NOV9)):
            await get(
                stats, f"/monitors/{SHOP}/timeseries", step=step, **{"from": start.isoformat()}
            )
        await get(stats, f"/monitors/{SHOP}/trends")
        response = await stats.client.get(f"/api/v1/stats/badges/{SHOP}/response-time.svg")
        assert response.status_code == 200
        await stats.service.refresh_metrics()
        reads = [(sql, p) for sql, p in Recorded.statements if " rollups" in sql]
        path = sqlite_url.split(":///", 1)[1]
    assert len(reads) >= 10
    plans = sqlite3.connect(path)
    try:
        for sql, parameters in reads:
            plan = [row[-1] for row in plans.execute(f"EXPLAIN QUERY PLAN {sql}", parameters)]
            lookups = [step for step in plan if "rollups" in step and "day_tails" not in step]
            assert lookups, (sql, plan)
            for step in lookups:
                assert step.startswith("SEARCH rollups USING"), (sql, plan)
                by_key = "(resolution=? AND bucket_start=? AND monitor_id=?" in step
                by_monitor = "INDEX ix_rollups_monitor (monitor_id=? AND resolution=?" in step
                assert by_key or by_monitor, (sql, plan)
    finally:
        plans.close()
