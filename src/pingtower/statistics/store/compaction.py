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
old watermark. SQLite runs one writer at a time (BEGIN IMMEDIATE), which gives the same; there
a fold reads and sums outside the write lock and, in its one short write transaction, writes
its sums only if no result that could change what it read was stored since, else folds again
inside it (`fold_next_hour_apart`).

When the watermark passes the end of an hour or a day, that cell is finished: compaction then
writes its figures (percentiles, the series point: domain/cell_figures.py) into its row, and
for a finished day the day tails the overview reads (tables.day_tails).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from operator import attrgetter, itemgetter
from typing import Any

from sqlalchemy import Text, bindparam, cast, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from pingtower.common import pacing
from pingtower.statistics.domain.cell_figures import figures_of_stored
from pingtower.statistics.domain.day_tails import tail_rows
from pingtower.statistics.domain.histogram import Histogram
from pingtower.statistics.domain.rollups import Cell, Resolution, floor_to
from pingtower.statistics.domain.series import StoredCell
from pingtower.statistics.store import sqlite_ingest
from pingtower.statistics.store.dialect import is_postgres
from pingtower.statistics.store.ingest import CellKey, cell_from_row, merge_cells
from pingtower.statistics.store.tables import day_tails, rollups
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
        stop = until
    else:
        hour = floor_to(first, Resolution.HOUR.length)
        stop = min(hour + Resolution.HOUR.length, until)
        if is_postgres(session):
            await _fold(session, first, stop)
        else:
            await _fold_on_sqlite(session, first, stop)
    await finish(session, start, stop)
    await move(session, stop)
    return stop


async def fold_next_hour_apart(
    engine: AsyncEngine, reader: AsyncEngine, until: datetime
) -> datetime | None:
    """`fold_next_hour` on SQLite (`engine`), with its reads and sums outside the write lock.

    The minute cells and the hour and day cells they go into are read in a read transaction
    of `reader` (a read-only engine: no write lock; WAL gives it a snapshot beside the
    writer), the final hour and day cells made from them and staged in a temporary table of
    a writer connection (`sqlite_ingest.FoldStage`), still outside the lock: all of it on
    the event loop's thread, a slice at a time between yields (`sqlite_ingest.read_fold`
    says why). Then one short write transaction checks that nothing they came from has
    changed (`sqlite_ingest.still_current`: no result stored since the read for a time from
    the watermark's day on, the watermark where it was), copies them into `rollups` with
    plain statements and moves the watermark: the same cells and watermark as one write
    transaction gives, written at once, so a crash leaves the fold undone or done. If
    something has changed (a result later than `compact_grace` arrived meanwhile), it folds
    again in one write transaction, as `fold_next_hour` does. A fold that finishes an hour
    or a day stages the figures of its cells too, made outside the lock from their final
    values (`FoldStage.add_figures`), and copies them in the same transaction; a day's
    tails are made after it, outside the lock too (`sqlite_ingest.write_day_tails_apart`)."""
    read = await sqlite_ingest.read_fold(reader, until)
    if read is None:
        return None
    async with engine.connect() as connection, sqlite_ingest.stage(connection) as stage:
        for at in range(0, len(read.minutes), SQLITE_SLICE):
            stage.add(sqlite_ingest.folded_rows(read.minutes[at : at + SQLITE_SLICE], read))
            # Outside the write lock: paced (common/pacing.py); the loops below run inside it,
            # where a sleep would hold the ingest back longer
            await pacing.pause()
        for resolution, first, last in finished_cells(read.start, read.stop):
            await stage.add_figures(resolution, first, last)
        written = await stage.write_alone(read)
    if written:
        day = finished_day(read.start, read.stop)
        if day is not None:
            await sqlite_ingest.write_day_tails_apart(engine, reader, day)
        return read.stop
    async with AsyncSession(engine) as session, session.begin():
        return await fold_next_hour(session, until)


async def mend_day_tails(engine: AsyncEngine, reader: AsyncEngine) -> datetime | None:
    """On SQLite, write the last finished day's tails again if they are not whole: a crash
    among the write transactions of `sqlite_ingest.write_day_tails_apart` leaves them in part,
    and readers would read that day's hour cells (the same answer, slower) until the next
    day's end. Returns the day mended, or None."""
    async with AsyncSession(reader) as session:
        day = floor_to(await folded_until(session), Resolution.DAY.length) - Resolution.DAY.length
    if await sqlite_ingest.day_tails_whole(reader, day):
        return None
    await sqlite_ingest.write_day_tails_apart(engine, reader, day)
    return day


async def _fold(session: AsyncSession, first: datetime, stop: datetime) -> None:
    """Add the minute cells starting in [first, stop) to their hour and day cells (the
    general path: SQLAlchemy's rows decoded, summed by `Cell`)."""
    r = rollups
    rows = await session.execute(
        select(r)
        .where(
            r.c.resolution == Resolution.MINUTE.value,
            r.c.bucket_start >= first,
            r.c.bucket_start < stop,
        )
        .order_by(r.c.monitor_id, r.c.region, r.c.bucket_start)
    )
    # A slice of monitors at a time, yielding between slices: a minute of 10,000 monitors
    # folded at once held the event loop for ~2 s (rows decoded, cells merged, the upsert's
    # rows built). A monitor's rows stay in one slice, so its cells add up as they did in one
    # go. The transaction (SQLite's write lock, PostgreSQL's watermark row) lasts longer by
    # what other tasks do during the yields.
    for part in whole_monitors(rows, SLICE):
        await merge_cells(session, coarser_cells(part))
        await asyncio.sleep(0)  # in the write transaction: no pacing


async def _fold_on_sqlite(session: AsyncSession, first: datetime, stop: datetime) -> None:
    """`fold_next_hour`'s folding on SQLite: the minute cells read as stored and the upsert's
    rows made from those forms (`sqlite_ingest.coarser_rows`: a minute cell alone in its hour
    passes through without being decoded), a slice of monitors at a time."""
    rows = await sqlite_ingest.minute_cells(session, first, stop)
    for part in whole_monitors(rows, SQLITE_SLICE, key=itemgetter(0)):
        await sqlite_ingest.add_cell_rows(session, sqlite_ingest.coarser_rows(part))
        await asyncio.sleep(0)  # in the write transaction: no pacing


_JSON = ("phase_sums", "phase_counts")
# Rows of cells handled between two yields to the event loop: ~30 ms of work (a minute
# cell folded into its hour and day cells costs ~0.3 ms of CPU on SQLite).
SLICE = 100
# On SQLite a minute cell folded costs ~50 us of CPU, its upsert on SQLite's thread included
# (~15 us of it on the loop: sqlite_ingest.coarser_rows), so 500 are ~25 ms
SQLITE_SLICE = 500


def whole_monitors(
    rows: Iterable[Any], size: int, key: Callable[[Any], Any] = attrgetter("monitor_id")
) -> Iterator[list[Any]]:
    """Rows in monitor order (`key`: a row's monitor), in slices of about `size` that never
    split a monitor's rows (the rows are decoded as the slices are taken, not all at once)."""
    part: list[Any] = []
    for row in rows:
        if len(part) >= size and key(row) != key(part[-1]):
            yield part
            part = []
        part.append(row)
    if part:
        yield part


def finished_cells(start: datetime, stop: datetime) -> list[tuple[Resolution, datetime, datetime]]:
    """The hour and day cells that end in (start, stop] as the watermark moves from `start`
    to `stop`: per resolution, the first and last start of those cells (none: not listed)."""
    found = []
    for resolution in (Resolution.HOUR, Resolution.DAY):
        first = floor_to(start, resolution.length)
        last = stop - resolution.length
        if first <= last:
            found.append((resolution, first, last))
    return found


def finished_day(start: datetime, stop: datetime) -> datetime | None:
    """The last day that ends in (start, stop] (its tails are written), if one does."""
    day = stop - Resolution.DAY.length
    if floor_to(start, Resolution.DAY.length) <= day:
        return floor_to(day, Resolution.DAY.length)
    return None


async def finish(session: AsyncSession, start: datetime, stop: datetime) -> None:
    """The watermark moves from `start` to `stop`: write the figures of the hour and day cells
    that end in (start, stop], and the day tails of the last day that does."""
    for resolution, first, last in finished_cells(start, stop):
        await write_figures(session, resolution, first, last)
    day = finished_day(start, stop)
    if day is not None:
        await write_day_tails(session, day)


async def write_figures(
    session: AsyncSession, resolution: Resolution, first: datetime, last: datetime
) -> None:
    """Figures into the cells of `resolution` starting in [first, last]."""
    r = rollups.c
    result = await session.execute(
        select(
            r.monitor_id,
            r.region,
            r.bucket_start,
            *(cast(r[name], Text) if name in _JSON else r[name] for name in StoredCell._fields),
        ).where(r.resolution == resolution.value, r.bucket_start >= first, r.bucket_start <= last)
    )
    connection = await session.connection()
    statement = (
        update(rollups)
        .where(
            r.monitor_id == bindparam("k_monitor_id"),
            r.resolution == resolution.value,
            r.bucket_start == bindparam("k_bucket_start"),
            r.region == bindparam("k_region"),
        )
        .values(
            figures_checks=bindparam("v_checks"),
            p50=bindparam("v_p50"),
            p90=bindparam("v_p90"),
            p95=bindparam("v_p95"),
            p99=bindparam("v_p99"),
            point_json=bindparam("v_point_json"),
        )
    )
    # a slice at a time, yielding between slices: every hour cell of 10,000 monitors at once
    # held the event loop for seconds
    for rows in result.partitions(SLICE):
        found = figures_of_stored([row[3:] for row in rows])
        await connection.execute(
            statement,
            [
                {"k_monitor_id": row[0], "k_region": row[1], "k_bucket_start": row[2]}
                | {f"v_{name}": value for name, value in cell._asdict().items()}
                for row, cell in zip(rows, found, strict=True)
            ],
        )
        await asyncio.sleep(0)  # in the write transaction: no pacing


async def write_day_tails(session: AsyncSession, day: datetime) -> None:
    """The day tails of `day` (a finished day), replacing those of any day before."""
    r = rollups.c
    rows = await session.execute(
        select(r.monitor_id, r.region, r.bucket_start, r.latency_count, r.histogram)
        .where(
            r.resolution == Resolution.HOUR.value,
            r.bucket_start >= day,
            r.bucket_start < day + Resolution.DAY.length,
        )
        .order_by(r.monitor_id)
    )
    await session.execute(delete(day_tails))
    starts = [day + hour * Resolution.HOUR.length for hour in range(24)]
    # a slice of monitors at a time, yielding between slices: 24 rows a monitor, 240,000 for
    # 10,000 monitors, held the event loop for tens of seconds at once
    for part in whole_monitors(rows, SLICE):
        cells: dict[tuple[Any, str], dict[int, tuple[int, bytes]]] = defaultdict(dict)
        for monitor_id, region, at, count, histogram in part:
            cells[(monitor_id, region)][at.hour] = (count, histogram)
        found = tail_rows(((*key, hours) for key, hours in cells.items()), starts)
        columns = dict(zip(_TAIL_COLUMNS, map(list, zip(*found, strict=True)), strict=True))
        await _insert_tails(session, columns)
        await asyncio.sleep(0)  # in the write transaction: no pacing


async def _insert_tails(session: AsyncSession, columns: dict[str, list[Any]]) -> None:
    if is_postgres(session):
        # ~24,000 rows for a thousand monitors: one statement fed an array per column
        await session.execute(_INSERT_TAILS_PG, columns)
        return
    connection = await session.connection()
    values = zip(*columns.values(), strict=True)
    await connection.execute(
        insert(day_tails), [dict(zip(columns, row, strict=True)) for row in values]
    )


_TAIL_COLUMNS = {
    "monitor_id": "uuid",
    "region": "varchar",
    "bucket_start": "timestamptz",
    "latency_count": "integer",
    "histogram": "bytea",
}
_INSERT_TAILS_PG = text(
    f"INSERT INTO day_tails ({', '.join(_TAIL_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in _TAIL_COLUMNS.items())
    + ")"
)


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
