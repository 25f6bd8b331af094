"""Compaction: ingest writes minute cells, a background step folds them into hour and day cells
behind a watermark; every figure reads the same before and after, and late results still land."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from pingtower.common import memory
from pingtower.common.events import Envelope
from pingtower.statistics.domain.histogram import Histogram
from pingtower.statistics.service import Retention
from pingtower.statistics.store import compaction, sqlite_ingest, tables
from pingtower.statistics.store.watermark import folded_until
from tests.integration.statistics.conftest import Clock, Harness, harness
from tests.integration.statistics.story import (
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


async def cells(stats: Harness) -> dict[str, tuple[int, int, int]]:
    """Per resolution: rows, checks and latency samples stored."""
    r = tables.rollups.c
    async with stats.service.sessions() as session:
        rows = await session.execute(
            select(
                r.resolution,
                func.count(),
                func.sum(r.up + r.degraded + r.down),
                func.sum(r.latency_count),
            ).group_by(r.resolution)
        )
        return {row[0]: (int(row[1]), int(row[2]), int(row[3])) for row in rows}


async def figures(stats: Harness) -> list[Any]:
    """What the API says about the shop's day, read through every rollup path."""
    day = {"from": NOV10.isoformat(), "to": (NOV10 + 24 * H).isoformat()}
    await stats.service.refresh_metrics()
    overview = await get(stats, "/overview")
    return [
        await get(stats, f"/monitors/{SHOP}/uptime", **day),
        await get(stats, f"/monitors/{SHOP}/timeseries", step="1h", **day),
        await get(stats, f"/monitors/{SHOP}/timeseries", step="1d", **day),
        await get(stats, f"/monitors/{SHOP}/timeseries", step="15m", **day),
        [(item["name"], item["p95_24h_ms"]) for item in overview["items"]],
    ]


async def test_results_are_written_as_minute_cells_and_folded_into_hours_and_days_later(
    early_stats: Harness,
) -> None:
    stats = early_stats
    await feed(stats, everything())
    assert set(await cells(stats)) == {"minute"}  # nothing folded yet
    stats.clock.now = NOV10 + 10 * H
    before = await figures(stats)
    assert before[0]["checks"] == 60

    assert await stats.service.compact() >= 1
    async with stats.service.sessions() as session:
        # up to the last minute that ended compact_grace (5 minutes) ago
        assert await folded_until(session) == NOV10 + 10 * H - 5 * M
    stored = await cells(stats)
    assert stored["hour"] == (2, 60, 60)  # one hour cell per region
    assert stored["day"] == (2, 60, 60)
    assert await figures(stats) == before

    # a rerun finds nothing to fold and adds nothing twice
    assert await stats.service.compact() == 0
    assert await cells(stats) == stored


async def test_a_compaction_that_folded_gives_the_freed_memory_back(
    early_stats: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    stats = early_stats
    released: list[bool] = []
    monkeypatch.setattr(memory, "release_freed_memory", lambda: released.append(True))
    await feed(stats, everything())
    stats.clock.now = NOV10 + 10 * H
    assert await stats.service.compact() >= 1
    assert released == [True]
    assert await stats.service.compact() == 0  # nothing folded: no peak to give back
    assert released == [True]


async def test_a_result_arriving_after_its_hour_was_folded_still_counts_once(
    early_stats: Harness,
) -> None:
    stats = early_stats
    await feed(stats, everything())
    stats.clock.now = NOV10 + 10 * H
    await stats.service.compact()
    late = check(30, 1000.0).model_copy(
        update={
            "check_id": uuid.uuid4(),
            "finished_at": NOV10 + 8 * H + 30 * M + timedelta(seconds=30),
        }
    )
    await feed(stats, [wrap(late)])
    stats.clock.now = NOV10 + 14 * H
    await stats.service.compact()  # folds on past the late result's hour: must not add it again

    stored = await cells(stats)
    assert stored["minute"][1] == stored["hour"][1] == stored["day"][1] == 61
    hourly = await get(
        stats,
        f"/monitors/{SHOP}/timeseries",
        step="1h",
        **{"from": (NOV10 + 8 * H).isoformat(), "to": (NOV10 + 9 * H).isoformat()},
    )
    (hour,) = hourly["points"]
    assert (hour["checks"], hour["max_ms"]) == (61, 1000.0)
    assert hour["mean_ms"] == pytest.approx((sum(range(1, 61)) + 1000.0) / 61)


async def test_pruning_folds_minute_cells_before_dropping_them(early_stats: Harness) -> None:
    stats = early_stats
    await feed(stats, everything())
    stats.service.retention = Retention(minute=timedelta(days=1))
    stats.clock.now = NOV10 + timedelta(days=3)
    removed = await stats.service.prune()
    assert removed["minute"] == 60
    assert "minute" not in await cells(stats)
    body = await get(
        stats,
        f"/monitors/{SHOP}/uptime",
        **{"from": NOV10.isoformat(), "to": (NOV10 + 24 * H).isoformat()},
    )
    assert (body["checks"], body["successful_checks"]) == (60, 58)


async def test_compaction_running_beside_ingest_loses_and_doubles_nothing(
    early_stats: Harness,
) -> None:
    stats = early_stats
    await feed(stats, everything()[:-60])  # monitors, timelines, incidents: no checks yet
    stats.clock.now = NOV10 + 10 * H  # 08:xx can be folded while its results still arrive
    checks = [wrap(check(minute, float(minute + 1))) for minute in range(60)]

    await stats.service.handler(checks[:1])  # so the first fold has an hour to fold

    async def ingest() -> None:
        for envelope in checks[1:]:  # one result per batch: many transactions
            await stats.service.handler([envelope])

    async def compact() -> None:
        for _ in range(30):
            await stats.service.compact()
            await asyncio.sleep(0)

    await asyncio.gather(ingest(), compact())
    await stats.service.compact()
    stored = await cells(stats)
    assert stored["minute"][1] == stored["hour"][1] == stored["day"][1] == 60


async def test_an_hour_folded_in_part_reads_the_same_and_takes_late_results_once(
    early_stats: Harness,
) -> None:
    stats = early_stats
    await feed(stats, everything())
    stats.clock.now = NOV10 + 8 * H + 40 * M
    before = await figures(stats)
    assert await stats.service.compact() >= 1
    async with stats.service.sessions() as session:
        # the watermark stops inside the hour: 08:00-08:35 folded, the rest still minutes
        assert await folded_until(session) == NOV10 + 8 * H + 35 * M
    assert await figures(stats) == before

    late = check(10, 1000.0).model_copy(
        update={"check_id": uuid.uuid4(), "finished_at": NOV10 + 8 * H + 20 * M}
    )
    await feed(stats, [wrap(late)])
    stats.clock.now = NOV10 + 10 * H
    await stats.service.compact()  # folds the rest of 08:xx, which must not add it again
    stored = await cells(stats)
    assert stored["minute"][1] == stored["hour"][1] == stored["day"][1] == 61
    day = {"from": NOV10.isoformat(), "to": (NOV10 + 24 * H).isoformat()}
    uptime = await get(stats, f"/monitors/{SHOP}/uptime", **day)
    assert uptime["checks"] == 61
    (hour,) = [
        p
        for p in (await get(stats, f"/monitors/{SHOP}/timeseries", step="1h", **day))["points"]
        if p["checks"]
    ]
    assert (hour["at"], hour["checks"], hour["max_ms"]) == ("2026-11-10T08:00:00Z", 61, 1000.0)


async def test_two_consumers_adding_to_the_same_cells_lose_nothing(early_stats: Harness) -> None:
    stats = early_stats
    await feed(stats, everything()[:-60])  # monitors, timelines, incidents: no checks yet

    def result(i: int) -> Envelope:
        # three minute cells of one region, so both consumers keep meeting each other's rows
        event = check(i % 3, 10.0 + i).model_copy(update={"check_id": uuid.uuid4(), "region": "eu"})
        return wrap(event)

    batches = [[result(4 * b + j) for j in range(4)] for b in range(40)]

    async def consumer(mine: list[list[Envelope]]) -> None:
        for batch in mine:
            await stats.service.handler(batch)

    await asyncio.gather(consumer(batches[0::2]), consumer(batches[1::2]))
    assert await cells(stats) == {"minute": (3, 160, 160)}
    r = tables.rollups.c
    async with stats.service.sessions() as session:
        stored = (await session.execute(select(r.histogram, r.latency_max))).all()
    assert sum(Histogram.from_bytes(row.histogram).count for row in stored) == 160
    assert max(row.latency_max for row in stored) == 10.0 + 159


class Folds:
    """Counts the folds on SQLite that found their reads changed at their write and folded
    again in one write transaction (`fold_next_hour` called by `fold_next_hour_apart`)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.again = 0
        original = compaction.fold_next_hour

        async def counted(session: AsyncSession, until: datetime) -> datetime | None:
            self.again += 1
            return await original(session, until)

        monkeypatch.setattr(compaction, "fold_next_hour", counted)


def late_check(at: datetime) -> Envelope:
    return wrap(check(30, 1000.0).model_copy(update={"check_id": uuid.uuid4(), "finished_at": at}))


@pytest.mark.parametrize(
    ("folded_first_to", "late_at"),
    [
        # in the minutes the fold reads: a minute cell the read did not see
        (None, NOV10 + 8 * H + 30 * M + timedelta(seconds=30)),
        # before the watermark, in the hour being folded: its hour and day cells grow
        (NOV10 + 8 * H + 40 * M, NOV10 + 8 * H + 20 * M),
        # in minutes the fold moves the watermark past without a cell to fold
        (NOV10 + 9 * H + 30 * M, NOV10 + 9 * H + 10 * M),
    ],
)
async def test_a_late_result_stored_between_a_folds_read_and_its_write_counts_once(
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    folded_first_to: datetime | None,
    late_at: datetime,
) -> None:
    """On SQLite a fold reads and sums outside the write lock: a result stored meanwhile
    (more than `compact_grace` late) must make it fold again, never write sums that miss it
    or move the watermark past its minute cell."""
    async with harness(sqlite_url, tmp_path, Clock(NOV10 + 8 * H), background=False) as stats:
        await feed(stats, everything())
        if folded_first_to is not None:
            stats.clock.now = folded_first_to + stats.service.compact_grace
            assert await stats.service.compact() >= 1
        folds = Folds(monkeypatch)
        read = sqlite_ingest.read_fold
        reads = 0

        async def read_then_late_result(reader: AsyncEngine, until: datetime) -> Any:
            nonlocal reads
            found = await read(reader, until)
            reads += 1
            if reads == 1:
                await stats.service.handler([late_check(late_at)])
            return found

        monkeypatch.setattr(sqlite_ingest, "read_fold", read_then_late_result)
        stats.clock.now = NOV10 + 10 * H
        await stats.service.compact()
        assert folds.again == 1
        stats.clock.now = NOV10 + 14 * H
        await stats.service.compact()
        stored = await cells(stats)
        assert stored["minute"][1] == stored["hour"][1] == stored["day"][1] == 61
        async with stats.service.sessions() as session:
            assert await folded_until(session) == NOV10 + 14 * H - 5 * M
        assert folds.again == 1


async def test_folds_on_sqlite_with_nothing_changed_write_what_they_read(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite, folds that find nothing changed since their read write it and never fold
    again; the figures of the cells a fold finishes are made before its write transaction and
    staged with its cells, not made inside it by `write_figures`."""
    async with harness(sqlite_url, tmp_path, Clock(NOV10 + 8 * H), background=False) as stats:
        await feed(stats, everything())
        folds = Folds(monkeypatch)
        in_the_lock = 0

        async def counted(*args: Any) -> None:
            nonlocal in_the_lock
            in_the_lock += 1

        monkeypatch.setattr(compaction, "write_figures", counted)
        for minutes in (10, 35, 61, 62, 120):  # in part, the rest, an hour's end, past it
            stats.clock.now = NOV10 + 8 * H + minutes * M + stats.service.compact_grace
            await stats.service.compact()
        assert folds.again == 0
        assert in_the_lock == 0
        stored = await cells(stats)
        assert stored["minute"][1] == stored["hour"][1] == stored["day"][1] == 60
        r = tables.rollups.c
        async with stats.service.sessions() as session:
            finished = await session.execute(
                select(r.figures_checks, r.up + r.degraded + r.down, r.p50).where(
                    r.resolution == "hour", r.bucket_start == NOV10 + 8 * H
                )
            )
            rows = finished.all()
        assert rows
        assert all(row[0] == row[1] for row in rows)
        assert any(row[2] is not None for row in rows)
