"""Compaction: minute cells folded into hour and day cells behind a watermark.

Ingest writes one minute cell per result (the costly hour and day upserts, which hit the same
hot rows batch after batch, are gone from the ingest path). Compaction then adds the minute
cells of [watermark, until) to their hour and day cells and moves the watermark, at most one
hour per transaction, so a rerun after a crash folds nothing twice. The watermark moves by
whole minutes: an hour cell may hold only the first minutes of its hour, and readers use it
as such (domain.rollups.cover, queries.recent_histograms), so a reader meets at most a few
minute cells after it rather than up to an hour of them. A result that arrives for a time
before the watermark is added to all three resolutions at ingest (see ingest._cells), so late
results still land.

On PostgreSQL, ingest holds the watermark row FOR SHARE while it writes cells and compaction
takes it FOR UPDATE: a fold never misses a minute cell written by a transaction that read the
old watermark. SQLite runs one writer at a time (BEGIN IMMEDIATE), which gives the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from pingtower.statistics.domain.histogram import Histogram
from pingtower.statistics.domain.rollups import Cell, Resolution, floor_to
from pingtower.statistics.store.ingest import CellKey, cell_from_row, merge_cells
from pingtower.statistics.store.tables import rollups
from pingtower.statistics.store.watermark import folded_until, move


async def fold_next_hour(session: AsyncSession, until: datetime) -> datetime | None:
    """Fold the minute cells from the first one at or after the watermark to the end of its
    hour (or to `until`, a minute boundary, if sooner) into hour and day cells; move the
    watermark there. Returns the new watermark, or None when it had already reached `until`."""
    start = await folded_until(session, lock="update")
    if start >= until:
        return None
    r = rollups
    first = await session.scalar(
        select(func.min(r.c.bucket_start)).where(
            r.c.resolution == Resolution.MINUTE.value,
            r.c.bucket_start >= start,
            r.c.bucket_start < until,
        )
    )
    if first is None:
        await move(session, until)
        return until
    hour = floor_to(first, Resolution.HOUR.length)
    stop = min(hour + Resolution.HOUR.length, until)
    rows = await session.execute(
        select(r).where(
            r.c.resolution == Resolution.MINUTE.value,
            r.c.bucket_start >= first,
            r.c.bucket_start < stop,
        )
    )
    await merge_cells(session, coarser_cells(rows))
    await move(session, stop)
    return stop


def coarser_cells(rows: Iterable[Any]) -> dict[CellKey, tuple[str, Cell]]:
    """Minute rows summed into their hour cells (histograms decoded and summed in bulk), and
    the hour cells into their day cells: every minute row is turned into a Cell once."""
    hours: dict[CellKey, tuple[str, Cell]] = {}
    histograms: dict[CellKey, list[bytes]] = {}
    for row in rows:
        key = (
            row.monitor_id,
            row.region,
            Resolution.HOUR.value,
            floor_to(row.bucket_start, Resolution.HOUR.length),
        )
        _, cell = hours.setdefault(key, (row.tenant, Cell()))
        cell.merge(cell_from_row(row, histogram=False))
        histograms.setdefault(key, []).append(row.histogram)
    cells = dict(hours)
    for key, (tenant, hour) in hours.items():
        hour.histogram = Histogram.from_bytes_many(histograms[key])
        monitor_id, region, _, start = key
        day_key = (monitor_id, region, Resolution.DAY.value, floor_to(start, Resolution.DAY.length))
        _, day = cells.setdefault(day_key, (tenant, Cell()))
        day.merge(hour)
    return cells
