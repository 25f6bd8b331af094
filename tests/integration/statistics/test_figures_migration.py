"""Revision 0005 writes the figures of the hour and day cells already finished (before the
compaction watermark) and none into those still being folded, on both databases; its
downgrade drops them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import text

from pingtower.common import db
from pingtower.common.events import Outcome
from pingtower.statistics.domain.cell_figures import figures
from pingtower.statistics.domain.rollups import Cell
from pingtower.statistics.domain.series import StoredCell
from pingtower.statistics.service import MIGRATIONS
from pingtower.statistics.store import tables
from tests.integration.statistics.test_histogram_migration import downgrade

MONITOR = uuid.UUID("00000000-0000-4000-8000-0000000000bb")
DAY = datetime(2026, 11, 10, tzinfo=UTC)
WATERMARK = DAY + timedelta(hours=2, minutes=30)


def cell(i: int) -> Cell:
    found = Cell()
    for j in range(5 + i):
        found.add_result(
            Outcome.DOWN if j == 3 else Outcome.UP,
            None if j == 4 else 10.0 * (i + 1) + j * j,
            {"dns": 1.5 + j, "tls": 7.25},
        )
    return found


def row(resolution: str, start: datetime, found: Cell) -> dict[str, object]:
    return {
        "monitor_id": MONITOR,
        "region": "eu",
        "resolution": resolution,
        "bucket_start": start,
        "tenant": "acme",
        "up": found.up,
        "degraded": found.degraded,
        "down": found.down,
        "latency_count": found.latency_count,
        "latency_min": found.latency_min,
        "latency_max": found.latency_max,
        "latency_sum": found.latency_sum,
        "phase_sums": found.phase_sums,
        "phase_counts": found.phase_counts,
        "histogram": found.histogram.to_bytes(),
    }


def stored(found: Cell) -> StoredCell:
    return StoredCell(
        found.up,
        found.degraded,
        found.down,
        found.latency_count,
        found.latency_min,
        found.latency_max,
        found.latency_sum,
        found.phase_sums,
        found.phase_counts,
        found.histogram.to_bytes(),
    )


async def test_finished_cells_get_their_figures_and_the_downgrade_drops_them(
    database_url: str,
) -> None:
    hours = [cell(i) for i in range(3)]  # 00:00 and 01:00 finished, 02:00 being folded
    day = cell(7)  # the day of the watermark: being folded
    older = cell(9)  # the day before: finished
    await asyncio.to_thread(db.run_migrations, database_url, MIGRATIONS, "0004")
    engine = db.create_engine(database_url)
    old = sa.table(
        "rollups",
        *(sa.column(c.name, c.type) for c in tables.rollups.c if c.name in row("h", DAY, day)),
    )
    try:
        async with engine.begin() as connection:
            await connection.execute(
                old.insert(),
                [
                    *(row("hour", DAY + i * timedelta(hours=1), h) for i, h in enumerate(hours)),
                    row("day", DAY, day),
                    row("day", DAY - timedelta(days=1), older),
                ],
            )
            await connection.execute(
                tables.watermarks.update()
                .where(tables.watermarks.c.name == "rollups")
                .values(folded_until=WATERMARK)
            )
        await engine.dispose()
        await asyncio.to_thread(db.run_migrations, database_url, MIGRATIONS, "0005")
        r = tables.rollups.c
        async with engine.connect() as connection:
            found = {
                (resolution, at): tuple(rest)
                for resolution, at, *rest in await connection.execute(
                    sa.select(
                        r.resolution,
                        r.bucket_start,
                        r.figures_checks,
                        r.p50,
                        r.p90,
                        r.p95,
                        r.p99,
                        r.point_json,
                    )
                )
            }
        expected = figures([stored(hours[0]), stored(hours[1]), stored(older)])
        assert found == {
            ("hour", DAY): tuple(expected[0]),
            ("hour", DAY + timedelta(hours=1)): tuple(expected[1]),
            ("hour", DAY + timedelta(hours=2)): (None,) * 6,
            ("day", DAY): (None,) * 6,
            ("day", DAY - timedelta(days=1)): tuple(expected[2]),
        }
        await engine.dispose()

        await asyncio.to_thread(downgrade, database_url, "0004")
        async with engine.connect() as connection:
            columns = (await connection.execute(text("SELECT * FROM rollups"))).keys()
            assert "point_json" not in columns
            assert "figures_checks" not in columns
    finally:
        await engine.dispose()
