"""Compaction works a slice of monitors at a time (yielding to the event loop between slices);
what it stores is what folding everything at once stores, to the last bit."""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from pingtower.common.events import CheckCompleted, Envelope, Outcome
from pingtower.common.sqlite_driver import OneTripConnection
from pingtower.statistics.store import compaction, sqlite_ingest, tables
from tests.integration.statistics.conftest import Clock, Harness, harness
from tests.integration.statistics.story import NOV10, H, M, created, feed, wrap

FLEET = [uuid.UUID(int=(0x7000 + i) << 64 | 0x4000_8000_0000_0000) for i in range(7)]
NOW = NOV10 + 26 * H + 10 * M  # past midnight: hours finished, a day finished, its tails


def results() -> list[Envelope]:
    """Every 10 minutes from 10 Nov 00:00 for 26 hours, some monitors from two regions."""
    found = [wrap(created(monitor_id, f"fleet-{n}")) for n, monitor_id in enumerate(FLEET)]
    for i in range(26 * 6):
        at = NOV10 + i * 10 * M + timedelta(seconds=3)
        for n, monitor_id in enumerate(FLEET):
            k = i * 7 + n
            found.append(
                wrap(
                    CheckCompleted(
                        check_id=uuid.uuid4(),
                        monitor_id=monitor_id,
                        region="eu" if n % 3 or i % 2 else "us",
                        scheduled_at=at - timedelta(seconds=2),
                        started_at=at - timedelta(seconds=1),
                        finished_at=at,
                        outcome=Outcome.DOWN if k % 11 == 0 else Outcome.UP,
                        latency_ms=None if k % 17 == 0 else 20.0 + (k * 37) % 400 / 3,
                        phases_ms={"dns": 1.0 + k % 3, "connect": 3.5 + (k % 7) / 3},
                    )
                )
            )
    return found


@pytest.fixture(params=["sqlite", "postgresql"])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Awaitable[str]]:
    """Gives the URL of a fresh database at each call."""
    if request.param == "postgresql":
        make: Callable[[], Awaitable[str]] = request.getfixturevalue("make_pg_database")
        return make
    made = itertools.count()

    async def sqlite_file() -> str:
        return f"sqlite+aiosqlite:///{tmp_path}/db{next(made)}.sqlite3"

    return sqlite_file


async def stored(stats: Harness) -> tuple[list[Any], list[Any]]:
    """Every rollup cell and day tail, in key order."""
    r, t = tables.rollups.c, tables.day_tails.c
    async with stats.service.sessions() as session:
        cells = await session.execute(
            select(tables.rollups).order_by(r.monitor_id, r.resolution, r.bucket_start, r.region)
        )
        tails = await session.execute(
            select(tables.day_tails).order_by(t.monitor_id, t.region, t.bucket_start)
        )
        return [tuple(row) for row in cells.all()], [tuple(row) for row in tails.all()]


async def compacted(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slice_rows: int
) -> tuple[list[Any], list[Any]]:
    monkeypatch.setattr(compaction, "SLICE", slice_rows)
    monkeypatch.setattr(compaction, "SQLITE_SLICE", slice_rows)
    async with harness(url, tmp_path, Clock(NOV10), background=False) as stats:
        await feed(stats, results())
        stats.clock.now = NOW
        assert await stats.service.compact() == 27  # an hour a step, the last one in part
        return await stored(stats)


async def test_compaction_in_slices_of_a_few_monitors_stores_what_one_slice_stores(
    new_database: Callable[[], Awaitable[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = await compacted(await new_database(), tmp_path, monkeypatch, 100_000)
    sliced = await compacted(await new_database(), tmp_path, monkeypatch, 2)  # a monitor or two
    cells, tails = whole
    assert {row[2] for row in cells} == {"minute", "hour", "day"}
    assert len(tails) == len(FLEET) * 24 + sum(1 for n in range(len(FLEET)) if n % 3 == 0) * 24
    assert sliced == whole


def test_slices_never_split_a_monitors_rows() -> None:
    class Row:
        def __init__(self, monitor_id: int) -> None:
            self.monitor_id = monitor_id

    rows = [Row(m) for m in (1, 1, 1, 2, 3, 3, 4, 4, 4, 4, 5)]
    parts = list(compaction.whole_monitors(rows, 2))
    assert [[row.monitor_id for row in part] for part in parts] == [
        [1, 1, 1],
        [2, 3, 3],
        [4, 4, 4, 4],
        [5],
    ]
    assert list(compaction.whole_monitors([], 2)) == []


async def folded_every_10_minutes(url: str, tmp_path: Path) -> tuple[list[Any], list[Any]]:
    async with harness(url, tmp_path, Clock(NOV10), background=False) as stats:
        await feed(stats, results())
        folds = 0
        while stats.clock.now < NOW:
            stats.clock.now = min(stats.clock.now + 10 * M, NOW)
            folds += await stats.service.compact()
        assert folds > 26 * 6  # a fold per 10 minutes, one more at each hour's end
        return await stored(stats)


async def test_sqlite_folding_a_minute_cell_at_a_time_stores_what_the_general_path_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Folded every 10 minutes, as in steady state each hour and day key gets one minute cell
    per fold: on SQLite it is added to the stored cells outside the write lock
    (`fold_next_hour_apart`), or, folded in the write transaction, passes through as stored
    and is added to the stored cell in the database. The cells must be those of the general
    path (SQLAlchemy's rows decoded, summed by `Cell`, encoded again), to the last bit."""
    apart = await folded_every_10_minutes(f"sqlite+aiosqlite:///{tmp_path}/apart.sqlite3", tmp_path)
    # the fold in one write transaction, its cells added inside SQLite by the upsert
    monkeypatch.setattr(compaction, "fold_next_hour_apart", in_one_transaction)
    passed_through = await folded_every_10_minutes(
        f"sqlite+aiosqlite:///{tmp_path}/through.sqlite3", tmp_path
    )
    monkeypatch.setattr(compaction, "_fold_on_sqlite", compaction._fold)
    general = await folded_every_10_minutes(
        f"sqlite+aiosqlite:///{tmp_path}/general.sqlite3", tmp_path
    )
    cells, _ = general
    assert {row[2] for row in cells} == {"minute", "hour", "day"}
    assert passed_through == general
    assert apart == general


async def in_one_transaction(
    engine: AsyncEngine, _readers: object, until: datetime
) -> datetime | None:
    async with AsyncSession(engine) as session, session.begin():
        return await compaction.fold_next_hour(session, until)


async def test_sqlite_day_tails_made_a_few_rows_at_a_time_are_those_of_the_folds_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite a day's tails are made after the fold that finished the day commits, from its
    hour cells read a chunk of rows at a time (a monitor's cells then span chunks), and copied
    in a few rows per write transaction: they must be the tails written in the fold's one
    write transaction."""
    monkeypatch.setattr(sqlite_ingest, "_CHUNK", 5)
    monkeypatch.setattr(sqlite_ingest, "_TAIL_ROWS", 7)
    apart = await folded_every_10_minutes(f"sqlite+aiosqlite:///{tmp_path}/apart.sqlite3", tmp_path)
    monkeypatch.setattr(compaction, "fold_next_hour_apart", in_one_transaction)
    together = await folded_every_10_minutes(
        f"sqlite+aiosqlite:///{tmp_path}/one.sqlite3", tmp_path
    )
    _, tails = together
    assert len(tails) > 7 * 3
    assert apart == together


@pytest.mark.parametrize("crash", ["copying", "deleting"])
async def test_sqlite_day_tails_cut_short_by_a_crash_are_written_again_at_the_first_fold(
    tmp_path: Path, crash: str
) -> None:
    """A crash among the write transactions that replace a finished day's tails leaves the
    new ones in part (or the old ones in part): the first fold after a restart writes them
    again, and one after whole tails leaves them be."""
    url = f"sqlite+aiosqlite:///{tmp_path}/crash.sqlite3"
    cells, tails = await folded_every_10_minutes(url, tmp_path)
    async with harness(url, tmp_path, Clock(NOW), background=False) as stats:
        async with stats.service.sessions() as session, session.begin():
            # the first write transactions' rows in, the rest not
            await session.execute(text("DELETE FROM day_tails WHERE rowid > 20"))
            if crash == "deleting":  # the day before's tails in part, none of the new ones
                await session.execute(
                    text("UPDATE day_tails SET bucket_start = datetime(bucket_start, '-1 day')")
                )
        assert await stats.service.compact() == 0  # nothing to fold: the tails only
        assert await stored(stats) == (cells, tails)
    async with harness(url, tmp_path, Clock(NOW), background=False) as stats:
        engine, reader = stats.service.engine, stats.service.read_engine
        assert await compaction.mend_day_tails(engine, reader) is None


async def test_sqlite_connections_that_staged_a_fold_or_tails_are_closed_after(
    tmp_path: Path,
) -> None:
    """A connection's temporary tables keep their memory after their rows go, until it
    closes: no pooled connection holds one after folds that staged cells, figures and a
    day's tails."""
    url = f"sqlite+aiosqlite:///{tmp_path}/closed.sqlite3"
    async with harness(url, tmp_path, Clock(NOV10), background=False) as stats:
        await feed(stats, results())
        stats.clock.now = NOW
        assert await stats.service.compact() == 27
        engine = stats.service.engine
        async with contextlib.AsyncExitStack() as held:  # every connection the pool keeps
            connections = [
                await held.enter_async_context(engine.connect())
                for _ in range(engine.pool.size())  # type: ignore[attr-defined]
            ]
            for connection in connections:
                driver = (await connection.get_raw_connection()).driver_connection
                assert isinstance(driver, OneTripConnection)
                # no transaction: the held connections would each need the write lock
                tables = await driver.run(partial(temporary_tables, driver._conn))
                assert tables == []


def temporary_tables(db: sqlite3.Connection) -> list[Any]:
    return db.execute("SELECT name FROM temp.sqlite_master").fetchall()
