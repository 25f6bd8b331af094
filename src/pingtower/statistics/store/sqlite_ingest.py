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
histogram and the phase maps by two functions registered on the connection, which add exactly as
`Cell.merge` does. SQLite's one writer (every transaction is BEGIN IMMEDIATE) keeps concurrent
batches from interleaving.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
import weakref
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiosqlite
from sqlalchemy.ext.asyncio import AsyncSession

from pingtower.common.events import CheckCompleted, MonitorStatusChanged
from pingtower.statistics.domain.histogram import Histogram
from pingtower.statistics.domain.rollups import EPOCH, Cell, CellKey, summed_cells
from pingtower.statistics.store.watermark import NAME as WATERMARK_NAME

T = TypeVar("T")
Checks = Sequence[tuple[str, CheckCompleted]]  # (workspace, result)


def sqlite_time(at: datetime) -> str:
    """`at` as SQLAlchemy stores a `UtcDateTime` on SQLite: naive UTC, microseconds always."""
    if at.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    if at.utcoffset():
        at = at.astimezone(UTC)
    return at.isoformat(" ", "microseconds")[:26]  # without the "+00:00"


def from_sqlite_time(stored: str) -> datetime:
    return datetime.fromisoformat(stored).replace(tzinfo=UTC)


async def owners(
    session: AsyncSession, monitor_ids: Collection[uuid.UUID]
) -> tuple[dict[uuid.UUID, str], datetime]:
    """The workspace of each of `monitor_ids` that has a projection row, and the compaction
    watermark."""
    by_hex = {monitor_id.hex: monitor_id for monitor_id in monitor_ids}
    found, folded = await _on_thread(session, lambda db: _read_owners(db, list(by_hex)))
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
    await _on_thread(session, lambda db: _store(db, checks, rows, folded_until))


async def store_results_of_known_monitors(session: AsyncSession, checks: Checks) -> bool:
    """`store_results` with the workspace check and the watermark read in the same trip: the
    usual batch, results of monitors whose projection row is there in the results' workspace.
    Otherwise it writes nothing and answers False, and the caller takes the general path
    (placeholder rows for new monitors, results of another workspace's monitor dropped)."""
    rows = _result_rows(checks)
    return await _on_thread(session, lambda db: _store_if_known(db, checks, rows))


def _store_if_known(db: sqlite3.Connection, checks: Checks, rows: list[Any]) -> bool:
    owners, folded_until = _read_owners(db, list({row[2] for row in rows}))
    known = dict(owners)
    if any(known.get(row[2]) != row[0] for row in rows):
        return False
    _store(db, checks, rows, folded_until)
    return True


def _result_rows(checks: Checks) -> list[tuple[Any, ...]]:
    """The results as `_INSERT_RESULT` parameters (workspace, monitor id as stored: 0, 2)."""
    return [
        (
            tenant,
            e.check_id.hex,
            e.monitor_id.hex,
            e.region,
            sqlite_time(e.scheduled_at),
            sqlite_time(e.started_at),
            sqlite_time(e.finished_at),
            e.outcome.value,
            e.latency_ms,
            e.error_kind,
            e.status_code,
            json.dumps(e.phases_ms),
        )
        for tenant, e in checks
    ]


def _store(db: sqlite3.Connection, checks: Checks, rows: list[Any], folded_until: datetime) -> None:
    """On the connection's thread."""
    cursor = db.cursor()
    try:
        fresh = [
            check
            for check, row in zip(checks, rows, strict=True)
            if cursor.execute(_INSERT_RESULT, row).rowcount
        ]
        if not fresh:
            return
        cursor.executemany(_ADD_TO_CELL, _cell_rows(summed_cells(fresh, folded_until)))
        cursor.executemany(_MOVE_LAST_CHECK, _last_checks(fresh))
    finally:
        cursor.close()


async def add_to_cells(session: AsyncSession, cells: dict[CellKey, tuple[str, Cell]]) -> None:
    """Add each cell (with its workspace) to its stored cell, inserting those not stored."""
    rows = _cell_rows(cells)
    await _on_thread(session, lambda db: db.executemany(_ADD_TO_CELL, rows).close())


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
        rows.append(
            (
                hex_id,
                region,
                resolution,
                stored_start,
                tenant,
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
        )
    return rows


def _last_checks(checks: Checks) -> list[tuple[Any, ...]]:
    latest: dict[uuid.UUID, CheckCompleted] = {}
    for _, event in checks:
        known = latest.get(event.monitor_id)
        if known is None or known.finished_at < event.finished_at:
            latest[event.monitor_id] = event
    rows = []
    for event in latest.values():
        finished = sqlite_time(event.finished_at)
        rows.append(
            (finished, event.outcome.value, event.latency_ms, event.monitor_id.hex, finished)
        )
    return rows


_INSERT_RESULT = (
    "INSERT INTO results (tenant, check_id, monitor_id, region, scheduled_at, started_at, "
    "finished_at, outcome, latency_ms, error_kind, status_code, phases) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (check_id, finished_at) DO NOTHING"
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
    "phase_counts = pingtower_add_maps(phase_counts, excluded.phase_counts), "
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
        await _on_thread(session, lambda db: _place(db, rows))


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
    total: dict[str, Any] = json.loads(stored) if stored else {}
    for name, value in (json.loads(added) if added else {}).items():
        total[name] = total.get(name, 0) + value
    return json.dumps(total)


_FUNCTIONS: dict[str, tuple[int, Callable[..., Any]]] = {
    "pingtower_add_maps": (2, add_maps),
    "pingtower_add_histograms": (2, Histogram.add_stored),
}
# The driver connections whose sqlite3 connection has the functions (one registration each)
_PREPARED: weakref.WeakSet[aiosqlite.Connection] = weakref.WeakSet()


async def _on_thread(session: AsyncSession, work: Callable[[sqlite3.Connection], T]) -> T:
    """`work` on the session's sqlite3 connection, on the connection's own thread, in the
    session's transaction (begun here if it was not yet)."""
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    if not isinstance(driver, aiosqlite.Connection):
        raise TypeError(f"not an aiosqlite connection: {type(driver).__name__}")
    if driver not in _PREPARED:
        for name, (arguments, function) in _FUNCTIONS.items():
            driver._conn.create_function(name, arguments, function, deterministic=True)
        _PREPARED.add(driver)
    # aiosqlite's queue to the thread (common/sqlite_driver.py uses it the same way)
    done: T = await driver._execute(work, driver._conn)  # type: ignore[no-untyped-call]
    return done
