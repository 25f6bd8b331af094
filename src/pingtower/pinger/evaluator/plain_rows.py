"""Many rows written to SQLite in one executemany of plain values, for the evaluator's batches.

SQLAlchemy's executemany builds a dictionary per row and runs it through the compiled
statement's parameter machinery (`construct_params`, processors looked up per key and row);
for the evaluator's results and state rows, sixty-odd a batch, that machinery cost more than
SQLite's own work (bench/README.md, performance round 5). Here each column's own bind
processor, the one SQLAlchemy would apply (so the stored values are identical: a test compares
them), is looked up once per statement shape and applied to plain tuples, and the statement
goes to the driver as text; `run_writes` runs several such statements (a batch's results and
its state rows) in one trip to SQLite's thread, straight on the sqlite3 connection.

SQLite only (its `?` parameters); on PostgreSQL the evaluator keeps SQLAlchemy's statements,
which asyncpg prepares once per connection. Column names go into the SQL text, so they must be
the table's own: each is looked up in the table (a KeyError otherwise) before any SQL is made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from pingtower.common.db import UtcDateTime
from pingtower.common.sqlite_driver import OneTripConnection, driver_of
from pingtower.common.sqlite_values import utc_text

_Processors = tuple[tuple[int, Callable[[Any], Any]], ...]


def _utc_text(value: datetime | None) -> str | None:
    """A `UtcDateTime` as SQLite stores it (`sqlite_values.utc_text`, which a test compares
    with SQLAlchemy's text), where SQLAlchemy's DATETIME took a conversion, a `replace` and a
    formatted dictionary (half the conversions of a result's row are its times)."""
    return None if value is None else utc_text(value)


@lru_cache(maxsize=64)
def _processors(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> _Processors:
    """The positions among `columns` whose type converts a value, with the conversion."""
    found = []
    for position, name in enumerate(columns):
        column_type = table.c[name].type
        process: Callable[[Any], Any] | None = (
            _utc_text
            if isinstance(column_type, UtcDateTime)
            else column_type.dialect_impl(dialect).bind_processor(dialect)
        )
        if process is not None:
            found.append((position, process))
    return tuple(found)


def _converted(processors: _Processors, rows: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
    if not processors:
        return [tuple(row) for row in rows]
    converted = []
    for row in rows:
        values = list(row)
        for position, process in processors:
            values[position] = process(values[position])
        converted.append(tuple(values))
    return converted


@lru_cache(maxsize=16)
def _insert(table: Table, columns: tuple[str, ...]) -> str:
    names = [table.c[name].name for name in columns]  # a KeyError for a name not the table's
    return f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"


# A statement and its rows for one executemany
Write = tuple[str, list[tuple[Any, ...]]]


def stored_insert(table: Table, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> Write:
    """An INSERT of rows already in their stored form (the caller converted them, as the
    columns' bind processors would), as a write for `run_writes`."""
    return _insert(table, columns), rows


def update_write(
    dialect: Dialect,
    table: Table,
    columns: tuple[str, ...],
    key: str,
    rows: Iterable[Sequence[Any]],
) -> Write:
    """`update_rows` as a write for `run_writes`."""
    processors = _processors(dialect, table, (*columns, key))
    return _update(table, columns, key), _converted(processors, rows)


@lru_cache(maxsize=64)
def _update(table: Table, columns: tuple[str, ...], key: str) -> str:
    names = [table.c[name].name for name in columns]
    where = table.c[key].name
    return f"UPDATE {table.name} SET {', '.join(f'{name} = ?' for name in names)} WHERE {where} = ?"


async def update_rows(
    session: AsyncSession,
    table: Table,
    columns: tuple[str, ...],
    key: str,
    rows: Iterable[Sequence[Any]],
) -> None:
    """UPDATE `columns` of the row whose `key` is the last value of each item of `rows`."""
    await run_writes(session, [update_write(session.get_bind().dialect, table, columns, key, rows)])


async def run_writes(session: AsyncSession, writes: Sequence[Write]) -> None:
    """Each write's executemany, in order, in one trip to SQLite's thread, in the session's
    transaction: a batch's results and its state rows together (a trip, with its hand-over of
    the GIL to the thread and back, cost more than a small statement)."""
    driver = await driver_of(session)
    run = _runner(driver, writes)
    if run is not None:
        await driver.run(run)


async def defer_writes(driver: OneTripConnection, writes: Sequence[Write]) -> None:
    """`run_writes` in the transaction on `driver`, but in the trip of its next statement or
    of its COMMIT (`OneTripConnection.defer`): for the last writes of a transaction, a trip
    less. A write that fails fails that statement or the COMMIT."""
    run = _runner(driver, writes)
    if run is not None:
        driver.defer(run)


def _runner(driver: OneTripConnection, writes: Sequence[Write]) -> Callable[[], None] | None:
    """The function running `writes` on the driver's thread (None if there is nothing to
    write)."""
    writes = [(statement, rows) for statement, rows in writes if rows]
    if not writes:
        return None
    db = driver._conn

    def run() -> None:
        cursor = db.cursor()
        try:
            for statement, rows in writes:
                cursor.executemany(statement, rows)
        finally:
            cursor.close()

    return run
