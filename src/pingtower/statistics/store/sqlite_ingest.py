"""The embedded mode's (SQLite) ingest of check results and status changes, straight on the
sqlite3 connection.

A batch's results, their rollup cells and the monitors' last checks are written in one trip to
the connection's thread, with constant statements fed plain values, in the transaction the
session has open. Through SQLAlchemy the same work cost about 300 us of CPU per result in the
embedded process (bench/README.md, performance round 5): statements built and compiled per
batch (an IN list of tuples for the cells), every value of every row through its type's bind
and result processors (UUIDs, UTC datetimes, JSON), the cells read back and written in Python,
and six trips to the thread. The values are stored exactly as SQLAlchemy stores them (UUIDs as
32 hex digits, `sqlite_time`, JSON text), so every other reader and writer still goes through
SQLAlchemy; tests compare the two forms.

A cell that exists already is added to inside SQLite (`INSERT ... ON CONFLICT DO UPDATE`): the
histogram and the phase maps by functions registered on the connection, which add exactly as
`Cell.merge` does. SQLite's one writer (every transaction is BEGIN IMMEDIATE) keeps concurrent
batches from interleaving. A result's converted values are shared with the Pinger's evaluator
(`common/sqlite_values.py`), and a cell of one result is written without a `Cell`
(`_fresh_cell_rows`): about a quarter less CPU per result (bench/README.md, round 6). A
result's row has one index besides its id, its unique key time first (migration 0006): the
two keyed by a random id it had put every result on two random pages, most of a batch's
COMMIT and half of its insert (round 8).

Compaction on SQLite reads the minute cells here as stored and makes its upsert's rows from
those forms (`coarser_rows`): in steady state a minute cell alone in its hour passes through
to its hour and day rows without being decoded and encoded again (round 7). A fold of several
minutes sums each monitor's minute rows as it reads them (`MinuteGroups`, round 13).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from pingtower.common import pacing
from pingtower.common.events import CheckCompleted, MonitorStatusChanged, Outcome
from pingtower.common.sqlite_driver import BEGIN, BEGIN_READ, OneTripConnection, driver_of
from pingtower.common.sqlite_values import result_texts, utc_text
from pingtower.statistics.domain.cell_figures import figures_of_stored
from pingtower.statistics.domain.day_tails import tail_rows
from pingtower.statistics.domain.histogram import Histogram
from pingtower.statistics.domain.rollups import (
    EPOCH,
    Cell,
    CellKey,
    Resolution,
    floor_to,
    highest,
    lowest,
    written_resolutions,
)
from pingtower.statistics.store.watermark import NAME as WATERMARK_NAME

T = TypeVar("T")
Checks = Sequence[tuple[str, CheckCompleted]]  # (workspace, result)


def sqlite_time(at: datetime) -> str:
    """`at` as SQLAlchemy stores a `UtcDateTime` on SQLite: naive UTC, microseconds always."""
    return utc_text(at)


def from_sqlite_time(stored: str) -> datetime:
    return datetime.fromisoformat(stored).replace(tzinfo=UTC)


async def owners(
    session: AsyncSession, monitor_ids: Collection[uuid.UUID]
) -> tuple[dict[uuid.UUID, str], datetime]:
    """The workspace of each of `monitor_ids` that has a projection row, and the compaction
    watermark."""
    by_hex = {monitor_id.hex: monitor_id for monitor_id in monitor_ids}
    found, folded = await on_thread(session, lambda db: _read_owners(db, list(by_hex)))
    return {by_hex[hex_id]: tenant for hex_id, tenant in found}, folded


def _read_owners(db: sqlite3.Connection, ids: list[str]) -> tuple[list[Any], datetime]:
    folded = db.execute(_WATERMARK, (WATERMARK_NAME,)).fetchone()
    found = db.execute(_OWNERS, (json.dumps(ids),)).fetchall()
    return found, EPOCH if folded is None else from_sqlite_time(folded[0])


_WATERMARK = "SELECT folded_until FROM watermarks WHERE name = ?"
_OWNERS = (
    "SELECT monitor_id, tenant FROM monitors WHERE monitor_id IN (SELECT value FROM json_each(?))"
)


async def store_results(session: AsyncSession, checks: Checks, folded_until: datetime) -> None:
    """Store each result not stored yet (a result is keyed by its check id and finish time, so
    a replay finds itself), add the new ones to their rollup cells and move their monitors'
    last check forward."""
    rows = _result_rows(checks)
    await on_thread(session, lambda db: _store(db, checks, rows, folded_until))


async def store_results_of_known_monitors(session: AsyncSession, checks: Checks) -> bool:
    """`store_results` with the workspace check and the watermark read in the same trip: the
    usual batch, results of monitors whose projection row is there in the results' workspace.
    Otherwise it writes nothing and answers False, and the caller takes the general path
    (placeholder rows for new monitors, results of another workspace's monitor dropped)."""
    rows = _result_rows(checks)
    return await on_thread(session, lambda db: _store_if_known(db, checks, rows))


def _store_if_known(db: sqlite3.Connection, checks: Checks, rows: list[Any]) -> bool:
    owners, folded_until = _read_owners(db, list({row[2] for row in rows}))
    known = dict(owners)
    if any(known.get(row[2]) != row[0] for row in rows):
        return False
    _store(db, checks, rows, folded_until)
    return True


def _result_rows(checks: Checks) -> list[tuple[Any, ...]]:
    """The results as `_INSERT_RESULT` parameters (workspace, monitor id as stored: 0, 2); the
    converted values come from `result_texts`, which the Pinger's evaluator shares."""
    rows = []
    for tenant, e in checks:
        texts = result_texts(e)
        rows.append(
            (
                tenant,
                texts.check_id,
                texts.monitor_id,
                e.region,
                texts.scheduled_at,
                texts.started_at,
                texts.finished_at,
                e.outcome.value,
                e.latency_ms,
                e.error_kind,
                e.status_code,
                texts.phases_ms,
            )
        )
    return rows


def _store(db: sqlite3.Connection, checks: Checks, rows: list[Any], folded_until: datetime) -> None:
    """On the connection's thread."""
    cursor = db.cursor()
    try:
        fresh = _insert_results(cursor, checks, rows)
        if not fresh:
            return
        fresh_rows = [rows[i] for i in fresh]
        cursor.executemany(
            _ADD_TO_CELL, _fresh_cell_rows([checks[i] for i in fresh], fresh_rows, folded_until)
        )
        cursor.executemany(_MOVE_LAST_CHECK, _last_checks(fresh_rows))
    finally:
        cursor.close()


def _insert_results(cursor: sqlite3.Cursor, checks: Checks, rows: list[Any]) -> list[int]:
    """Insert the results not stored yet; the positions of those inserted, in order.

    One executemany, whose summed row count says whether every result was new (the usual
    case: one statement instead of one per result). If some were stored already (a replay),
    the new ones are those numbered past the largest id before the insert: SQLite numbers a
    new row past the largest rowid while that is below 2^63 - 1 (`results.id` is the rowid),
    so they are the fresh rows whatever the replay skipped."""
    if not rows:
        return []
    last = cursor.execute(_LAST_RESULT_ID).fetchone()[0]
    cursor.executemany(_INSERT_RESULT, rows)
    if cursor.rowcount == len(rows):
        return list(range(len(rows)))
    if last is not None and last >= _LARGEST_ROWID:
        raise RuntimeError("results' ids are exhausted")
    inserted = {
        (check_id, finished)
        for check_id, finished in cursor.execute(_RESULTS_AFTER, (-1 if last is None else last,))
    }
    return [i for i, row in enumerate(rows) if (row[1], row[6]) in inserted]


_LARGEST_ROWID = 2**63 - 1
_LAST_RESULT_ID = "SELECT max(id) FROM results"
_RESULTS_AFTER = "SELECT check_id, finished_at FROM results WHERE id > ?"


def _fresh_cell_rows(
    checks: Checks, rows: Sequence[tuple[Any, ...]], folded_until: datetime
) -> list[tuple[Any, ...]]:
    """`_cell_rows(summed_cells(checks, folded_until))` for fresh results (`rows`: their
    `_result_rows`), the same rows made with less work. A minute cell's key and start come
    from the result's stored finish time (a minute starts where the text's seconds do: minutes
    are aligned on the epoch, which has no leap seconds in Python's time). A cell of one
    result, the usual one in a batch, is written from its values without a `Cell`: its
    histogram's stored form is made for its one latency, its phase counts' text is shared
    with every result of the same phases, and its phase sums' text is the result's own phases
    text where adding to 0.0 changes no value's text (checked: a positive float). Cells of several
    results are summed by `Cell` as before. Tests compare both ways of making the rows."""
    groups: dict[tuple[str, str, str, str], list[int]] = {}
    tenants: dict[tuple[str, str, str, str], str] = {}
    for i, (tenant, event) in enumerate(checks):
        row = rows[i]
        finished = event.finished_at
        if finished < folded_until:
            # A late result: its hour and day cells too (`written_resolutions`).
            for resolution in written_resolutions(finished, folded_until):
                start = floor_to(finished, resolution.length)
                key = (row[2], event.region, resolution.value, sqlite_time(start))
                groups.setdefault(key, []).append(i)
                tenants.setdefault(key, tenant)
            continue
        key = (row[2], event.region, _MINUTE, row[6][:17] + "00.000000")
        found = groups.get(key)
        if found is None:
            groups[key] = [i]
            tenants[key] = tenant
        else:
            found.append(i)
    cell_rows = []
    for key, members in groups.items():
        if len(members) == 1:
            i = members[0]
            values = _one_result_cell(checks[i][1], rows[i][11])
        else:
            cell = Cell()
            for i in members:
                event = checks[i][1]
                cell.add_result(event.outcome, event.latency_ms, event.phases_ms)
            values = _cell_values(cell)
        cell_rows.append((*key, tenants[key], *values))
    return cell_rows


_MINUTE = Resolution.MINUTE.value


def _one_result_cell(event: CheckCompleted, phases_text: str) -> tuple[Any, ...]:
    """The `_ADD_TO_CELL` values (from `up` on) of a cell holding `event` alone, as
    `_cell_values` gives them for a `Cell` that `add_result` was given `event`."""
    outcome = event.outcome
    latency = event.latency_ms
    phases = event.phases_ms
    if latency is not None and latency >= 0:
        counted, total = 1, 0.0 + latency
        histogram = Histogram.stored_one(latency)
    else:
        counted, total, latency, histogram = 0, 0.0, None, _EMPTY_HISTOGRAM
    if not all(type(value) is float and value > 0.0 for value in phases.values()):
        phases_text = json.dumps({phase: 0.0 + value for phase, value in phases.items()})
    return (
        1 if outcome is Outcome.UP else 0,
        1 if outcome is Outcome.DEGRADED else 0,
        1 if outcome is not Outcome.UP and outcome is not Outcome.DEGRADED else 0,
        counted,
        latency,
        latency,
        total,
        phases_text,
        _ones_text(tuple(phases)),
        histogram,
    )


_EMPTY_HISTOGRAM = Histogram().to_bytes()


@lru_cache(maxsize=64)
def _ones_text(phases: tuple[str, ...]) -> str:
    """The stored phase counts of a cell of one result with these phases."""
    return json.dumps(dict.fromkeys(phases, 1))


def _cell_values(cell: Cell) -> tuple[Any, ...]:
    """A cell's `_ADD_TO_CELL` values from `up` on."""
    return (
        cell.up,
        cell.degraded,
        cell.down,
        cell.latency_count,
        cell.latency_min,
        cell.latency_max,
        cell.latency_sum,
        json.dumps(cell.phase_sums),
        json.dumps(cell.phase_counts),
        cell.histogram.to_bytes(),
    )


async def add_to_cells(session: AsyncSession, cells: dict[CellKey, tuple[str, Cell]]) -> None:
    """Add each cell (with its workspace) to its stored cell, inserting those not stored."""
    await add_cell_rows(session, _cell_rows(cells))


def _cell_rows(cells: dict[CellKey, tuple[str, Cell]]) -> list[tuple[Any, ...]]:
    """The cells as `_ADD_TO_CELL` parameters."""
    # Most keys share their monitor or bucket with others of the batch: each converted once
    hex_ids: dict[uuid.UUID, str] = {}
    times: dict[datetime, str] = {}
    rows = []
    for (monitor_id, region, resolution, start), (tenant, cell) in cells.items():
        hex_id = hex_ids.get(monitor_id)
        if hex_id is None:
            hex_id = hex_ids[monitor_id] = monitor_id.hex
        stored_start = times.get(start)
        if stored_start is None:
            stored_start = times[start] = sqlite_time(start)
        rows.append((hex_id, region, resolution, stored_start, tenant, *_cell_values(cell)))
    return rows


async def minute_cells(session: AsyncSession, first: datetime, stop: datetime) -> list[Any]:
    """The minute cells starting in [first, stop) as the driver's plain rows (`_MINUTE_CELLS`'
    columns), in monitor, region and time order: compaction's input on SQLite."""
    span = (sqlite_time(first), sqlite_time(stop))
    return await on_thread(session, lambda db: db.execute(_MINUTE_CELLS, span).fetchall())


async def add_cell_rows(session: AsyncSession, rows: list[tuple[Any, ...]]) -> None:
    """Add `_ADD_TO_CELL` rows (`coarser_rows`) to their stored cells."""
    await on_thread(session, lambda db: db.executemany(_ADD_TO_CELL, rows).close())


_MINUTE_CELLS = (
    "SELECT monitor_id, region, bucket_start, tenant, up, degraded, down, latency_count, "
    "latency_min, latency_max, latency_sum, phase_sums, phase_counts, histogram FROM rollups "
    "WHERE resolution = 'minute' AND bucket_start >= ? AND bucket_start < ? "
    "ORDER BY monitor_id, region, bucket_start"
)


def coarser_rows(rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """`_cell_rows(compaction.coarser_cells(rows))` for minute rows as `minute_cells` reads
    them (stored forms, not yet decoded), the same `_ADD_TO_CELL` rows made with less work.

    In steady state compaction folds one minute a minute, so each hour and day key gets one
    minute cell: its values are what that cell's are once added to an empty one, which are
    its stored values (the latency sum as `0.0 +` gives it) when its phase maps are as
    `json.dumps` writes what they decode to and its histogram is as `to_bytes` writes it.
    Those are checked (`_passes_through`); where they do not hold, or a key gets several
    cells, the cells are summed by `Cell` as `coarser_cells` does. Tests compare both ways."""
    hours: dict[tuple[str, str, str], list[Sequence[Any]]] = {}
    for row in rows:
        # the hour's start as stored: minutes, seconds and fraction zeroed (fixed width, UTC)
        hours.setdefault((row[0], row[1], row[2][:14] + "00:00.000000"), []).append(row)
    found: list[tuple[Any, ...]] = []
    days: dict[tuple[str, str, str], list[tuple[Any, ...]]] = {}
    for (monitor, region, hour), members in hours.items():
        first = members[0]
        if len(members) == 1 and _passes_through(first):
            values: tuple[Any, ...] = (*first[4:10], 0.0 + first[10], *first[11:14])
        else:
            values = _cell_values(_summed_minutes(members))
        row = (monitor, region, _HOUR, hour, first[3], *values)
        found.append(row)
        days.setdefault((monitor, region, hour[:11] + "00:00:00.000000"), []).append(row)
    for (monitor, region, day), parts in days.items():
        if len(parts) == 1:
            # a cell added to an empty one stores the same values (a `Cell` of stored
            # values, as this hour's are, holds no -0.0 that `0.0 +` would change)
            values = parts[0][5:]
        else:
            total = Cell()
            for part in parts:
                total.merge(_cell_of_values(part[5:]))
            values = _cell_values(total)
        found.append((monitor, region, _DAY, day, parts[0][4], *values))
    return found


_HOUR = Resolution.HOUR.value
_DAY = Resolution.DAY.value


@dataclass(frozen=True)
class FoldInput:
    """What a fold on SQLite reads outside the write lock (`read_fold`), in one snapshot: the
    minute cells to fold and the hour and day cells they go into, with what `still_current`
    needs to tell, in the write transaction, that none of it has changed since."""

    start: datetime  # the watermark
    stop: datetime  # where the fold moves it
    watermark: str | None  # as stored (None: no row yet)
    newest_result: tuple[int, str] | None  # id and check id of the newest result
    # `_MINUTE_CELLS` rows by monitor and region, each one's in time order, or summed
    # (`MinuteGroups`)
    minutes: Sequence[MinuteGroup]
    hours: dict[tuple[str, str], tuple[Any, ...]]  # (monitor, region): rowid, `_VALUES`
    days: dict[tuple[str, str], tuple[Any, ...]]


async def read_fold(engine: AsyncEngine, until: datetime) -> FoldInput | None:
    """`compaction.fold_next_hour`'s reads in a read transaction (BEGIN DEFERRED: no write
    lock) on a connection of `engine` (a read-only engine's, `db.read_only_engine`); None
    when the watermark has reached `until`.

    The rows are fetched and decoded on the event loop's thread, a chunk at a time between
    yields, the connection being this task's alone meanwhile: on SQLite's thread each row
    would wait for the GIL, which a busy event loop hands over only every switch interval
    (5 ms): in a process as busy as `pingtower up` at 50,000 monitors that made the fold's
    reads and writes there last seconds (bench/README.md, performance round 9)."""
    async with engine.connect() as connection:
        db = (await _driver(connection))._conn
        db.execute(BEGIN_READ)
        try:
            return await _read_fold(db, until)
        finally:
            db.rollback()


async def _read_fold(db: sqlite3.Connection, until: datetime) -> FoldInput | None:
    found = db.execute(_WATERMARK, (WATERMARK_NAME,)).fetchone()
    watermark = None if found is None else found[0]
    start = EPOCH if watermark is None else from_sqlite_time(watermark)
    if start >= until:
        return None
    newest = db.execute(_NEWEST_RESULT).fetchone()
    first = db.execute(_FIRST_MINUTE, (sqlite_time(start), sqlite_time(until))).fetchone()[0]
    minutes = MinuteGroups()
    hours: dict[tuple[str, str], tuple[Any, ...]] = {}
    days: dict[tuple[str, str], tuple[Any, ...]] = {}
    stop = until
    if first is not None:
        hour = floor_to(from_sqlite_time(first), Resolution.HOUR.length)
        stop = min(hour + Resolution.HOUR.length, until)
        span = (first, sqlite_time(stop))
        # in time order (the key: resolution and time first), grouped here: no sort in SQLite
        async for rows in _chunks(db, _MINUTE_CELLS_BY_TIME, span):
            for row in rows:
                minutes.add(row)
        for cells, resolution, at in (
            (hours, _HOUR, hour),
            (days, _DAY, floor_to(hour, Resolution.DAY.length)),
        ):
            async for rows in _chunks(db, _CELLS_AT, (resolution, sqlite_time(at))):
                for row in rows:
                    key = (row[0], row[1])
                    if key in minutes:
                        cells[key] = row[2:]
    newest_result = None if newest is None else (newest[0], newest[1])
    return FoldInput(start, stop, watermark, newest_result, minutes.groups(), hours, days)


class MinuteGroups:
    """A fold's minute rows (`_MINUTE_CELLS_BY_TIME`, in time order) by monitor and region.

    A key's first row is kept as read; from its second on, its rows are summed as they come
    (`_MinuteSum`), as `_summed_minutes` sums them: a fold of several minutes (`compact_every`)
    holds a sum per key, not a row per minute, and hands `folded_rows` one row per key, which
    takes the path of a minute alone in its hour. A key whose phase maps are not JSON objects
    keeps its rows, summed by `coarser_rows` as before."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], list[Any]] = {}
        self._sums: dict[tuple[str, str], _MinuteSum] = {}

    def add(self, row: Sequence[Any]) -> None:
        key = (row[0], row[1])
        summed = self._sums.get(key)
        if summed is not None:
            if not summed.add(row):
                # summed with the rest by `coarser_rows`: the same as each of the rows would be
                self._rows[key] = [summed.row(), row]
                del self._sums[key]
            return
        found = self._rows.get(key)
        if found is None:
            self._rows[key] = [row]
        elif len(found) == 1 and (summed := _MinuteSum.of(found[0], row)) is not None:
            self._sums[key] = summed
            del self._rows[key]
        else:
            found.append(row)

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._rows or key in self._sums

    def groups(self) -> list[MinuteGroup]:
        """Each key's rows as read, or their sum (made into a row by `folded_rows`, a slice at
        a time between paced yields: all 50,000 at once held the event loop for ~0.4 s)."""
        return [*self._rows.values(), *self._sums.values()]


class _MinuteSum:
    """Minute rows of a key summed as `_summed_minutes` sums them (`Cell.merge` of each into
    an empty cell, in time order; the histograms at the end, `Histogram.from_bytes_many`),
    its phase maps decoded once per row. `row` is the summed row in `_cell_values`' forms."""

    __slots__ = (
        "counts",
        "degraded",
        "down",
        "first",
        "high",
        "histograms",
        "latency_count",
        "latency_sum",
        "low",
        "sums",
        "up",
    )

    def __init__(self, first: Sequence[Any]) -> None:
        self.first = tuple(first[:4])  # monitor, region, minute (the first), workspace
        self.up = self.degraded = self.down = self.latency_count = 0
        self.low: Any = None
        self.high: Any = None
        self.latency_sum = 0.0
        self.sums: dict[str, Any] = {}
        self.counts: dict[str, Any] = {}
        self.histograms: list[bytes | None] = []

    @classmethod
    def of(cls, first: Sequence[Any], then: Sequence[Any]) -> _MinuteSum | None:
        summed = cls(first)
        return summed if summed.add(first) and summed.add(then) else None

    def add(self, row: Sequence[Any]) -> bool:
        """Add a row; False (nothing added) where its phase maps are not JSON objects."""
        if type(row[11]) is not str or type(row[12]) is not str:
            return False
        sums = _loads(row[11]) or {}
        counts = _decoded_counts(row[12]) or {}
        if type(sums) is not dict or type(counts) is not dict:
            return False
        self.up += row[4]
        self.degraded += row[5]
        self.down += row[6]
        self.latency_count += row[7]
        self.latency_sum += row[10]
        # by the functions `Cell.merge` uses: which of two equal values stays is theirs
        self.low = lowest(self.low, row[8])
        self.high = highest(self.high, row[9])
        total = self.sums
        for phase, value in sums.items():
            total[phase] = total.get(phase, 0.0) + value
        total = self.counts
        for phase, count in counts.items():
            total[phase] = total.get(phase, 0) + count
        self.histograms.append(row[13])
        return True

    def row(self) -> tuple[Any, ...]:
        return (
            *self.first,
            self.up,
            self.degraded,
            self.down,
            self.latency_count,
            self.low,
            self.high,
            self.latency_sum,
            _dumps(self.sums),
            _dumps(self.counts),
            Histogram.from_bytes_many(self.histograms).to_bytes(),
        )


# A key's minute rows as read, or their sum
MinuteGroup = Sequence[Sequence[Any]] | _MinuteSum


def group_rows(group: MinuteGroup) -> Sequence[Sequence[Any]]:
    """A key's minute rows: as read, or their sum made into one row."""
    return [group.row()] if isinstance(group, _MinuteSum) else group


@lru_cache(maxsize=1024)
def _decoded_counts(text: str) -> Any:
    """Stored phase counts decoded (few texts recur); the caller must not change the map."""
    return json.loads(text)


async def _chunks(
    db: sqlite3.Connection, sql: str, parameters: Sequence[Any]
) -> AsyncIterator[list[Any]]:
    """A query's rows, `_CHUNK` at a time with a yield to the event loop after each."""
    cursor = db.execute(sql, parameters)
    try:
        while rows := cursor.fetchmany(_CHUNK):
            yield rows
            await pacing.pause()
    finally:
        cursor.close()


# Rows fetched and decoded between two yields: ~5 ms
_CHUNK = 1000
_MINUTE_CELLS_BY_TIME = (
    "SELECT monitor_id, region, bucket_start, tenant, up, degraded, down, latency_count, "
    "latency_min, latency_max, latency_sum, phase_sums, phase_counts, histogram FROM rollups "
    "WHERE resolution = 'minute' AND bucket_start >= ? AND bucket_start < ? "
    "ORDER BY bucket_start"
)


async def _driver(connection: AsyncConnection) -> OneTripConnection:
    driver = (await connection.get_raw_connection()).driver_connection
    if not isinstance(driver, OneTripConnection):
        raise TypeError(f"not the embedded mode's SQLite driver: {type(driver).__name__}")
    return driver


_NEWEST_RESULT = "SELECT id, check_id FROM results ORDER BY id DESC LIMIT 1"
_FIRST_MINUTE = (
    "SELECT min(bucket_start) FROM rollups "
    "WHERE resolution = 'minute' AND bucket_start >= ? AND bucket_start < ?"
)
_VALUES = (
    "up, degraded, down, latency_count, latency_min, latency_max, latency_sum, phase_sums, "
    "phase_counts, histogram"
)
# The cells of one resolution and start; a fold keeps those its minute cells go into. (By the
# key, time first: a condition on the minute cells of each would look them up by time alone.)
_CELLS_AT = (
    f"SELECT monitor_id, region, rowid, {_VALUES} FROM rollups "
    "WHERE resolution = ? AND bucket_start = ?"
)


def folded_rows(groups: Sequence[MinuteGroup], read: FoldInput) -> list[tuple[Any, ...]]:
    """For minute rows of `read` (`groups`: some of its monitors' and regions', each in time
    order): the hour and day cells they make once added to the stored ones `read` holds, as
    `_STAGE` rows (the stored cell's rowid, or None for a cell not stored yet; its key,
    workspace and final values). The values are those `_ADD_TO_CELL` stores when it adds
    `coarser_rows` of the rows to the same cells, by the same functions in the same order
    (tests compare both).

    The usual fold has one minute row per hour and day cell, both stored (one minute cell, or
    a few summed as they were read: `MinuteGroups`): it is added to them from its stored forms
    (`_one_minute`), its phase sums decoded once for both. Others (rows that could not be
    summed as read, a cell not stored yet) go through `coarser_rows`."""
    found: list[tuple[Any, ...]] = []
    rest: list[Sequence[Any]] = []
    for group in groups:
        rows = group_rows(group)
        row = rows[0]
        key = (row[0], row[1])
        hour, day = read.hours.get(key), read.days.get(key)
        more = _one_minute(row) if len(rows) == 1 and hour and day else None
        if more is None or hour is None or day is None:
            rest.extend(rows)
        else:
            at = row[2]
            found.append((hour[0], *key, _HOUR, at[:14] + "00:00.000000", row[3], *more(hour)))
            found.append((day[0], *key, _DAY, at[:11] + "00:00:00.000000", row[3], *more(day)))
    for row in coarser_rows(rest):
        monitor, region, resolution = row[:3]
        stored = (read.hours if resolution == _HOUR else read.days).get((monitor, region))
        if stored is None:
            found.append((None, *row))
        else:
            found.append((stored[0], *row[:5], *added(stored[1:], row[5:])))
    return found


def _one_minute(row: Sequence[Any]) -> Callable[[Sequence[Any]], tuple[Any, ...]] | None:
    """For a minute row alone in its hour: a function that gives a stored cell's (rowid,
    `_VALUES`) values once the row is added, as `added(stored, coarser_rows([row])[i][5:])`
    gives them; None where its forms are not those `coarser_rows` passes through (phase
    counts and histogram) or its phase sums are not a JSON object.

    `coarser_rows` gives the row's phase sums as the text of `{name: 0.0 + value}`, which
    `add_maps` decodes to that same map (floats go to JSON text and back unchanged): here it
    is made once and added to both stored cells' maps."""
    sums = _loads(row[11])
    if (
        type(sums) is not dict
        or not _counts_as_dumped(row[12])
        or not Histogram.is_stored_form(row[13])
    ):
        return None
    sums = {name: 0.0 + value for name, value in sums.items()}
    up, degraded, down, count, more_low, more_high = row[4:10]
    more_total, counts, histogram = 0.0 + row[10], row[12], row[13]

    def add(stored: Sequence[Any]) -> tuple[Any, ...]:
        low, high = stored[5], stored[6]
        if low is None or (more_low is not None and low >= more_low):
            low = more_low
        if high is None or (more_high is not None and high < more_high):
            high = more_high
        total: dict[str, Any] = _loads(stored[8]) if stored[8] else {}
        for name, value in sums.items():
            total[name] = total.get(name, 0) + value
        return (
            stored[1] + up,
            stored[2] + degraded,
            stored[3] + down,
            stored[4] + count,
            low,
            high,
            stored[7] + more_total,
            _dumps(total),
            _add_counts(stored[9], counts),
            Histogram.add_stored(stored[10], histogram),
        )

    return add


def added(stored: Sequence[Any], more: Sequence[Any]) -> tuple[Any, ...]:
    """`_VALUES` of a stored cell once `_ADD_TO_CELL` has added `more` (its values from `up`
    on) to it, computed here: SQLite's `min` and `max` of two equal values (0.0 and -0.0) give
    the second and the first."""
    up, degraded, down, count, low, high, total, sums, counts, histogram = stored
    more_low, more_high = more[4], more[5]
    if low is None or (more_low is not None and low >= more_low):
        low = more_low
    if high is None or (more_high is not None and high < more_high):
        high = more_high
    return (
        up + more[0],
        degraded + more[1],
        down + more[2],
        count + more[3],
        low,
        high,
        total + more[6],
        add_maps(sums, more[7]),
        _add_counts(counts, more[8]),
        Histogram.add_stored(histogram, more[9]),
    )


class FoldStage:
    """A fold's final cells staged in a temporary table of one writer connection (`stage`):
    filled outside the write lock (a connection's temporary tables are its own, written
    without it), then copied into `rollups` by one statement each for the stored cells and
    the new ones (`write_staged`), in C, with no value of a row handed over from Python
    while the write lock is held."""

    def __init__(self, driver: OneTripConnection) -> None:
        self.driver = driver
        self.stored = 0  # rows staged for stored cells
        self.new = 0
        self.figures = 0  # figures staged for finished cells

    def add(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Stage `folded_rows`' rows, on the event loop's thread (as `read_fold` reads: the
        connection is this task's alone; its temporary tables are in memory)."""
        self.driver._conn.executemany(_STAGE, rows).close()
        new = sum(1 for row in rows if row[0] is None)
        self.new += new
        self.stored += len(rows) - new

    async def add_figures(self, resolution: Resolution, first: datetime, last: datetime) -> None:
        """Stage the figures of the cells of `resolution` starting in [first, last] (those a
        fold finishes: `compaction.finished_cells`), as `compaction.write_figures` makes them,
        from the cells' final values: those staged, else those stored. Outside the write lock,
        a chunk at a time between paced yields: once an hour, the figures of every monitor's
        hour cell (50,000 cells: seconds of CPU) held the lock and so the ingest. They hold if
        the write finds the read still current (`still_current`): cells change only with a
        result stored for a time in the span it checks, which holds these cells."""
        db = self.driver._conn
        span = (resolution.value, sqlite_time(first), sqlite_time(last))
        async for rows in _chunks(db, _FINAL_CELLS, span * 2):
            found = figures_of_stored([row[4:] for row in rows])
            db.executemany(
                _STAGE_FIGURES, [(*row[:4], *cell) for row, cell in zip(rows, found, strict=True)]
            ).close()
            self.figures += len(rows)

    async def write_alone(self, read: FoldInput) -> bool:
        """`write_staged` in a write transaction of its own, from BEGIN IMMEDIATE to COMMIT
        in one trip to the connection's thread: the write lock is held for that work alone,
        never across a wait for the event loop to resume a task (`plain_transaction`
        commits in a trip of its own). The connection must have no transaction open."""
        db = self.driver._conn
        return await self.driver.run(
            lambda: _in_write_transaction(db, partial(self.write_staged, db, read))
        )

    def write_staged(self, db: sqlite3.Connection, read: FoldInput) -> bool:
        """On the connection's thread, in its write transaction: when `read` is still current
        (`still_current`), copy the staged cells and figures into `rollups` and move the
        watermark to `read.stop`; True if so (False: nothing written)."""
        if not still_current(db, read):
            return False
        db.execute("SAVEPOINT pingtower_fold")
        try:
            done = (
                db.execute(_SET_STAGED).rowcount == self.stored
                and db.execute(_INSERT_STAGED).rowcount == self.new
                and (not self.figures or db.execute(_SET_FIGURES).rowcount == self.figures)
            )
        except sqlite3.IntegrityError:  # a cell not stored at the read is there now
            done = False
        if not done:
            # a stored cell not where the read found it: nothing written, fold again
            db.execute("ROLLBACK TO pingtower_fold")
            db.execute("RELEASE pingtower_fold")
            return False
        db.execute("RELEASE pingtower_fold")
        stop = sqlite_time(read.stop)
        if db.execute(_MOVE_WATERMARK, (stop, WATERMARK_NAME)).rowcount == 0:
            db.execute(_NEW_WATERMARK, (WATERMARK_NAME, stop))
        return True


@asynccontextmanager
async def stage(connection: AsyncConnection) -> AsyncIterator[FoldStage]:
    """A `FoldStage` on `connection` (of the embedded mode's writer engine; no transaction
    open on it), its tables made on it; the connection is closed after (`_let_go`)."""
    driver = await _driver(connection)
    db = driver._conn
    try:
        await driver.run(partial(_new_stage, db, _CREATE_STAGE, _CREATE_FIGURES))
        yield FoldStage(driver)
    finally:
        await _let_go(connection)


async def _let_go(connection: AsyncConnection) -> None:
    """Close a connection that staged rows in temporary tables (the pool opens another when
    it needs one). Its temporary database, in memory, keeps the pages the rows took after
    they are deleted or their table dropped, until the connection closes; the pool hands its
    connections out in turn, so each came to hold a fold's peak (and one a day's tails):
    the resident set grew about 1 MiB a second at 50,000 monitors every 30 s."""
    await connection.invalidate()


def _new_stage(db: sqlite3.Connection, *creates: str) -> None:
    """Temporary tables in memory, made by `creates`: none is there yet, as every connection
    that staged rows is closed after (`_let_go`)."""
    if db.execute("PRAGMA temp_store").fetchone()[0] != _MEMORY:
        db.execute(f"PRAGMA temp_store = {_MEMORY}")
    for create in creates:
        db.execute(create)


def _in_write_transaction(db: sqlite3.Connection, work: Callable[[], T]) -> T:
    """On the connection's thread: `work` from BEGIN IMMEDIATE to COMMIT (rolled back if it
    raises), so the write lock is held for that work alone."""
    db.execute(BEGIN)
    try:
        done = work()
    except BaseException:
        db.rollback()
        raise
    db.commit()
    return done


def still_current(db: sqlite3.Connection, read: FoldInput) -> bool:
    """Whether every cell a fold of `read` writes or reads (minute, hour and day cells from
    the watermark's day to `read.stop`, and the figures and day tails `compaction.finish`
    makes of them) is as `read` found it, and the watermark too.

    Cells only change with a new result: ingest adds a result to its cells in the
    transaction that stores it (sqlite_ingest, ingest), and only if it stored it. So they
    are unchanged when no result finished in that span has been stored since `read`'s
    snapshot: none past its newest one, which is still there (results are numbered past the
    largest id: while it stays, every new one is numbered past it; pruning removes only old
    results). A few rows past the snapshot's newest, found by id, not by time."""
    found = db.execute(_WATERMARK, (WATERMARK_NAME,)).fetchone()
    if (None if found is None else found[0]) != read.watermark:
        return False
    after = 0
    if read.newest_result is not None:
        after, check_id = read.newest_result
        found = db.execute(_RESULT_CHECK, (after,)).fetchone()
        if found is None or found[0] != check_id:
            return False
    span = (sqlite_time(floor_to(read.start, Resolution.DAY.length)), sqlite_time(read.stop))
    return db.execute(_RESULT_IN_SPAN_AFTER, (after, *span)).fetchone() is None


_MEMORY = 2  # PRAGMA temp_store: temporary tables in memory, never in a file
_RESULT_CHECK = "SELECT check_id FROM results WHERE id = ?"
# `+finished_at`: by id (the few rows past the snapshot), never by the index on times
_RESULT_IN_SPAN_AFTER = (
    "SELECT 1 FROM results WHERE id > ? AND +finished_at >= ? AND +finished_at < ? LIMIT 1"
)
_KEY = "monitor_id, region, resolution, bucket_start"
_CELL_COLUMNS = f"{_KEY}, tenant, {_VALUES}"
_CREATE_STAGE = f"CREATE TEMP TABLE pingtower_fold (ref, {_CELL_COLUMNS})"
_STAGE = f"INSERT INTO temp.pingtower_fold VALUES ({', '.join('?' * 16)})"
_FIGURES = "figures_checks, p50, p90, p95, p99, point_json"  # as `CellFigures` holds them
_CREATE_FIGURES = f"CREATE TEMP TABLE pingtower_figures ({_KEY}, {_FIGURES})"
_STAGE_FIGURES = f"INSERT INTO temp.pingtower_figures VALUES ({', '.join('?' * 10)})"
# The final values of the cells of a resolution in a span: staged ones, else stored ones
_FINAL_CELLS = (
    f"SELECT {_KEY}, {_VALUES} FROM main.rollups WHERE resolution = ? AND bucket_start >= ? "
    "AND bucket_start <= ? AND rowid NOT IN "
    "(SELECT ref FROM temp.pingtower_fold WHERE ref IS NOT NULL) "
    f"UNION ALL SELECT {_KEY}, {_VALUES} FROM temp.pingtower_fold "
    "WHERE resolution = ? AND bucket_start >= ? AND bucket_start <= ?"
)
# By key: a cell first stored by this fold has no rowid staged
_SET_FIGURES = (
    "UPDATE main.rollups SET "
    + ", ".join(f"{name} = g.{name}" for name in _FIGURES.split(", "))
    + " FROM temp.pingtower_figures AS g WHERE "
    + " AND ".join(f"rollups.{name} = g.{name}" for name in _KEY.split(", "))
)
# By rowid, the key checked: a stored cell elsewhere (renumbered by a VACUUM) is not updated
_SET_STAGED = (
    "UPDATE main.rollups SET "
    + ", ".join(f"{name} = f.{name}" for name in _VALUES.split(", "))
    + " FROM temp.pingtower_fold AS f WHERE f.ref IS NOT NULL AND rollups.rowid = f.ref AND "
    + " AND ".join(f"rollups.{name} = f.{name}" for name in _KEY.split(", "))
)
_INSERT_STAGED = (
    f"INSERT INTO main.rollups ({_CELL_COLUMNS}) "
    f"SELECT {_CELL_COLUMNS} FROM temp.pingtower_fold WHERE ref IS NULL"
)
_MOVE_WATERMARK = "UPDATE watermarks SET folded_until = ? WHERE name = ?"
_NEW_WATERMARK = "INSERT INTO watermarks (name, folded_until) VALUES (?, ?)"


async def write_day_tails_apart(engine: AsyncEngine, reader: AsyncEngine, day: datetime) -> None:
    """`compaction.write_day_tails` on SQLite, once the fold that finished `day` committed:
    the tails made outside the write lock and written in short write transactions.

    The day's hour cells are read in a read transaction of `reader` in monitor order (the
    sort runs on SQLite's thread, in C), the tails made from them on the event loop's thread
    a chunk at a time between paced yields and staged in a temporary table of a writer
    connection of `engine`; then the old tails are deleted and the new ones copied in, up to
    `_TAIL_ROWS` rows per write transaction. At 50,000 monitors a day has 1.2 million tails:
    made and written in the fold's write transaction they held ingest back for as long. A
    reader checks a monitor's tails against its hour cells (their latency counts,
    queries.py) and reads the hour cells where they do not hold, so one reading between
    those transactions, or after a crash among them, gets the same answer, more slowly."""
    starts = [sqlite_time(day + hour * Resolution.HOUR.length) for hour in range(24)]
    span = (sqlite_time(day), sqlite_time(day + Resolution.DAY.length))
    async with engine.connect() as connection:
        driver = await _driver(connection)
        db = driver._conn
        try:
            await driver.run(partial(_new_stage, db, _CREATE_TAILS_STAGE))
            async with reader.connect() as reading:
                source = await _driver(reading)
                await source.run(lambda: source._conn.execute(BEGIN_READ).close())
                staged = 0
                try:
                    async for cells in _monitors_hours(source, span):
                        cursor = db.executemany(_STAGE_TAIL, tail_rows(cells, starts))
                        staged += cursor.rowcount
                        cursor.close()
                finally:
                    await source.run(source._conn.rollback)
            delete = partial(_changes, db, _DELETE_TAILS, ())
            while await driver.run(partial(_in_write_transaction, db, delete)):
                pass
            for first in range(0, staged, _TAIL_ROWS):  # the staged rows' rowids: 1 to staged
                copy = partial(_changes, db, _COPY_TAILS, (first, first + _TAIL_ROWS))
                await driver.run(partial(_in_write_transaction, db, copy))
        finally:
            await _let_go(connection)


async def day_tails_whole(reader: AsyncEngine, day: datetime) -> bool:
    """Whether `day`'s tails are all written: as many as `tail_rows` makes of its hour cells
    (none when it has none). `write_day_tails_apart` deletes the old tails and copies the new
    ones in several write transactions, so a crash among them leaves fewer."""
    span = (sqlite_time(day), sqlite_time(day + Resolution.DAY.length))
    async with reader.connect() as connection:
        driver = await _driver(connection)
        written, made = await driver.run(
            lambda: driver._conn.execute(_TAILS_WRITTEN_AND_MADE, span * 2).fetchone()
        )
    return bool(written == made)


async def _monitors_hours(
    source: OneTripConnection, span: tuple[str, str]
) -> AsyncIterator[list[tuple[str, str, dict[int, tuple[int, bytes]]]]]:
    """The hour cells of `span` (a day), per monitor and region as `tail_rows` takes them,
    the monitors of a chunk of rows at a time (a monitor split between chunks waits for the
    next). The query's first rows, which need its sort, are fetched on SQLite's thread."""
    db = source._conn
    cursor = db.cursor()
    rows = await source.run(lambda: cursor.execute(_DAY_HOURS, span).fetchmany(_CHUNK))
    try:
        carried: dict[tuple[str, str], dict[int, tuple[int, bytes]]] = {}
        while rows:
            for monitor, region, at, count, histogram in rows:
                carried.setdefault((monitor, region), {})[int(at[11:13])] = (count, histogram)
            last = rows[-1][0]
            done = [(*key, hours) for key, hours in carried.items() if key[0] != last]
            carried = {key: hours for key, hours in carried.items() if key[0] == last}
            yield done
            await pacing.pause()
            rows = cursor.fetchmany(_CHUNK)
        yield [(*key, hours) for key, hours in carried.items()]
    finally:
        cursor.close()


def _changes(db: sqlite3.Connection, statement: str, parameters: Sequence[Any]) -> bool:
    """Whether `statement` changed any row."""
    return db.execute(statement, parameters).rowcount > 0


# Tails written per write transaction: ~0.1 s of SQLite's work
_TAIL_ROWS = 50_000
_TAIL_COLUMNS = "monitor_id, region, bucket_start, latency_count, histogram"
_DAY_HOURS = (
    f"SELECT {_TAIL_COLUMNS} FROM rollups WHERE resolution = 'hour' AND bucket_start >= ? "
    "AND bucket_start < ? ORDER BY monitor_id, region"
)
# A monitor's tails run from its first hour with a cell to the day's end (`tail_rows`)
_TAILS_WRITTEN_AND_MADE = (
    "SELECT (SELECT count(*) FROM day_tails WHERE bucket_start >= ? AND bucket_start < ?), "
    "(SELECT coalesce(sum(24 - CAST(substr(first, 12, 2) AS INTEGER)), 0) FROM "
    "(SELECT min(bucket_start) AS first FROM rollups WHERE resolution = 'hour' "
    "AND bucket_start >= ? AND bucket_start < ? GROUP BY monitor_id, region))"
)
_CREATE_TAILS_STAGE = f"CREATE TEMP TABLE pingtower_tails ({_TAIL_COLUMNS})"
_STAGE_TAIL = "INSERT INTO temp.pingtower_tails VALUES (?, ?, ?, ?, ?)"
_DELETE_TAILS = (
    "DELETE FROM main.day_tails WHERE rowid IN "
    f"(SELECT rowid FROM main.day_tails LIMIT {_TAIL_ROWS})"
)
_COPY_TAILS = (
    f"INSERT INTO main.day_tails ({_TAIL_COLUMNS}) SELECT {_TAIL_COLUMNS} FROM "
    "temp.pingtower_tails WHERE rowid > ? AND rowid <= ?"
)


def _passes_through(row: Sequence[Any]) -> bool:
    return (
        _counts_as_dumped(row[12])
        and _sums_as_dumped(row[11])
        and Histogram.is_stored_form(row[13])
    )


def _sums_as_dumped(text: str) -> bool:
    """Whether stored phase sums are the text `Cell.merge` into an empty cell and
    `json.dumps` give back."""
    sums = _loads(text)
    if type(sums) is not dict:
        return False
    return _dumps({name: 0.0 + value for name, value in sums.items()}) == text


@lru_cache(maxsize=1024)
def _counts_as_dumped(text: str) -> bool:
    """`_sums_as_dumped` for phase counts (added to 0, not 0.0); few texts recur."""
    counts = json.loads(text)
    if type(counts) is not dict:
        return False
    return json.dumps({name: 0 + value for name, value in counts.items()}) == text


def _summed_minutes(rows: Sequence[Sequence[Any]]) -> Cell:
    """Minute rows summed as `compaction.coarser_cells` sums them into an hour cell."""
    cell = Cell()
    for row in rows:
        cell.merge(
            Cell(
                up=row[4],
                degraded=row[5],
                down=row[6],
                latency_count=row[7],
                latency_min=row[8],
                latency_max=row[9],
                latency_sum=row[10],
                phase_sums=dict(json.loads(row[11]) or {}),
                phase_counts=dict(json.loads(row[12]) or {}),
            )
        )
    cell.histogram = Histogram.from_bytes_many([row[13] for row in rows])
    return cell


def _cell_of_values(values: Sequence[Any]) -> Cell:
    """The `Cell` whose `_cell_values` are `values`."""
    up, degraded, down, latency_count, latency_min, latency_max, latency_sum = values[:7]
    return Cell(
        up=up,
        degraded=degraded,
        down=down,
        latency_count=latency_count,
        latency_min=latency_min,
        latency_max=latency_max,
        latency_sum=latency_sum,
        phase_sums=json.loads(values[7]),
        phase_counts=json.loads(values[8]),
        histogram=Histogram.from_bytes(values[9]),
    )


def _last_checks(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Each monitor's latest result among `rows` (`_result_rows`) as `_MOVE_LAST_CHECK`
    parameters. Stored times compare as the times do (fixed width, all UTC)."""
    latest: dict[str, tuple[Any, ...]] = {}
    for row in rows:
        known = latest.get(row[2])
        if known is None or known[6] < row[6]:
            latest[row[2]] = row
    return [(row[6], row[7], row[8], monitor, row[6]) for monitor, row in latest.items()]


_INSERT_RESULT = (
    "INSERT INTO results (tenant, check_id, monitor_id, region, scheduled_at, started_at, "
    "finished_at, outcome, latency_ms, error_kind, status_code, phases) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (finished_at, check_id) DO NOTHING"
)
# NULL-safe: min(NULL, x) is NULL in SQL, while a cell without latencies has none to compare
_ADD_TO_CELL = (
    "INSERT INTO rollups (monitor_id, region, resolution, bucket_start, tenant, up, degraded, "
    "down, latency_count, latency_min, latency_max, latency_sum, phase_sums, phase_counts, "
    "histogram) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (monitor_id, resolution, bucket_start, region) DO UPDATE SET "
    "up = up + excluded.up, degraded = degraded + excluded.degraded, "
    "down = down + excluded.down, latency_count = latency_count + excluded.latency_count, "
    "latency_min = min(coalesce(latency_min, excluded.latency_min), "
    "coalesce(excluded.latency_min, latency_min)), "
    "latency_max = max(coalesce(latency_max, excluded.latency_max), "
    "coalesce(excluded.latency_max, latency_max)), "
    "latency_sum = latency_sum + excluded.latency_sum, "
    "phase_sums = pingtower_add_maps(phase_sums, excluded.phase_sums), "
    "phase_counts = pingtower_add_counts(phase_counts, excluded.phase_counts), "
    "histogram = pingtower_add_histograms(histogram, excluded.histogram)"
)
# The condition keeps a newer last check (stored times compare as text: fixed width)
_MOVE_LAST_CHECK = (
    "UPDATE monitors SET last_check_at = ?, last_outcome = ?, last_latency_ms = ? "
    "WHERE monitor_id = ? AND (last_check_at IS NULL OR last_check_at < ?)"
)


async def place_status_changes(
    session: AsyncSession, changes: Sequence[tuple[str, MonitorStatusChanged]]
) -> None:
    """Each change (with its workspace), in the given order, on its monitor's timeline as
    `ingest._apply_status_changes` places it on PostgreSQL."""
    rows = [
        (tenant, e.monitor_id.hex, sqlite_time(e.changed_at), e.current.value, e.reason[:500])
        for tenant, e in changes
    ]
    if rows:
        await on_thread(session, lambda db: _place(db, rows))


def _place(db: sqlite3.Connection, changes: list[tuple[str, str, str, str, str]]) -> None:
    cursor = db.cursor()
    try:
        for tenant, monitor, at, status, reason in changes:
            same = cursor.execute(_SAME_START, (monitor, at)).fetchone()
            if same is not None:
                # Two changes at the same instant: the one applied last holds.
                cursor.execute(_RESTATE, (status, reason, same[0]))
                continue
            following = cursor.execute(_FOLLOWING, (monitor, at)).fetchone()
            preceding = cursor.execute(_PRECEDING, (monitor, at)).fetchone()
            if preceding is not None:
                cursor.execute(_END, (at, preceding[0]))
            end = None if following is None else following[0]
            cursor.execute(_INTERVAL, (tenant, monitor, at, end, status, reason))
    finally:
        cursor.close()


_SAME_START = "SELECT id FROM status_intervals WHERE monitor_id = ? AND start_at = ?"
_RESTATE = "UPDATE status_intervals SET status = ?, reason = ? WHERE id = ?"
_FOLLOWING = (
    "SELECT start_at FROM status_intervals WHERE monitor_id = ? AND start_at > ? "
    "ORDER BY start_at LIMIT 1"
)
_PRECEDING = (
    "SELECT id FROM status_intervals WHERE monitor_id = ? AND start_at < ? "
    "ORDER BY start_at DESC LIMIT 1"
)
_END = "UPDATE status_intervals SET end_at = ? WHERE id = ?"
_INTERVAL = (
    "INSERT INTO status_intervals (tenant, monitor_id, start_at, end_at, status, reason) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


def add_maps(stored: str | None, added: str | None) -> str:
    """Two stored phase maps (JSON objects name -> number) added as `Cell.merge` adds them."""
    total: dict[str, Any] = _loads(stored) if stored else {}
    for name, value in (_loads(added) if added else {}).items():
        total[name] = total.get(name, 0) + value
    return _dumps(total)


# `json.loads` and `json.dumps` with their default settings, by the very scanner and C encoder
# those use, without their wrapping per call (`dumps` builds an encoder at every call): a
# third less time in `add_maps`, which SQLite's upsert calls for every result added to a
# stored minute cell and every minute cell compaction folds. Tests hold both to json's own.
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _loads(text: str) -> Any:
    if type(text) is str:
        try:
            found, end = _scan(text, 0)
        except StopIteration:
            return json.loads(text)  # not JSON from its first character: json says why
        if end == len(text):
            return found
    return json.loads(text)


def _encoder() -> Callable[[Any, int], list[str]] | None:
    """`json.dumps`' C encoder as `JSONEncoder.iterencode` builds it for the default
    settings, or None where the C accelerator is missing or is built otherwise."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        encode: Callable[[Any, int], list[str]] = make(
            None,  # no circularity check: these maps are flat, and a failed call leaves nothing
            json.JSONEncoder().default,
            json.encoder.encode_basestring_ascii,
            None,
            ": ",
            ", ",
            False,
            False,
            True,
        )
    except TypeError:
        return None
    return encode if "".join(encode({"a": [1, 0.5, None]}, 0)) == '{"a": [1, 0.5, null]}' else None


_encode = _encoder()


def _dumps(value: Any) -> str:
    if _encode is None:
        return json.dumps(value)
    return "".join(_encode(value, 0))


# Phase counts repeat (a minute cell's counts are its number of results, per phase), so their
# sums are kept rather than decoded, added and encoded again for every result.
_add_counts = lru_cache(maxsize=1024)(add_maps)
_FUNCTIONS: dict[str, tuple[int, Callable[..., Any]]] = {
    "pingtower_add_maps": (2, add_maps),
    "pingtower_add_counts": (2, _add_counts),
    "pingtower_add_histograms": (2, Histogram.add_stored),
}
# The driver connections whose sqlite3 connection has the functions (one registration each)
_PREPARED: weakref.WeakSet[OneTripConnection] = weakref.WeakSet()


async def on_thread(session: AsyncSession, work: Callable[[sqlite3.Connection], T]) -> T:
    """`work` on the session's sqlite3 connection, on the connection's own thread, in the
    session's transaction (begun here if it was not yet)."""
    driver = await driver_of(session)
    if driver not in _PREPARED:
        for name, (arguments, function) in _FUNCTIONS.items():
            driver._conn.create_function(name, arguments, function, deterministic=True)
        _PREPARED.add(driver)
    # In the session's transaction: its BEGIN may still be to run (sqlite_driver.py)
    db = driver._conn
    return await driver.run(lambda: work(db))
