"""Many rows written to SQLite in one executemany of plain values, for the evaluator's batches.

SQLAlchemy's executemany builds a dictionary per row and runs it through the compiled
statement's parameter machinery (`construct_params`, processors looked up per key and row);
for the evaluator's results and state rows, sixty-odd a batch, that machinery cost more than
SQLite's own work (bench/README.md, performance round 5). Here each column's own bind
processor, the one SQLAlchemy would apply (so the stored values are identical: a test compares
them), is looked up once per statement shape and applied to plain tuples, and the statement
goes to the driver as text in one trip.

SQLite only (its `?` parameters); on PostgreSQL the evaluator keeps SQLAlchemy's statements,
which asyncpg prepares once per connection. Column names go into the SQL text, so they must be
the table's own: each is looked up in the table (a KeyError otherwise) before any SQL is made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from pingtower.common.db import UtcDateTime

_Processors = tuple[tuple[int, Callable[[Any], Any]], ...]


def _utc_text(value: datetime | None) -> str | None:
    """A `UtcDateTime` as SQLite stores it: the text `UtcDateTime` and SQLAlchemy's DATETIME
    make (a test compares them), where theirs took a conversion, a `replace` and a formatted
    dictionary (half the conversions of a result's row are its times). `isoformat` of a UTC
    time is that text followed by "+00:00"."""
    if value is None:
        return None
    offset = value.utcoffset()
    if offset is None:
        raise ValueError("naive datetime given to a UTC column")
    if offset:
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]


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


async def insert_rows(
    session: AsyncSession, table: Table, columns: tuple[str, ...], rows: Iterable[Sequence[Any]]
) -> None:
    """INSERT one row per item of `rows`, each its values in the order of `columns`."""
    connection = await session.connection()
    processors = _processors(connection.dialect, table, columns)
    statement = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)})"
    )
    await connection.exec_driver_sql(statement, _converted(processors, rows))


async def update_rows(
    session: AsyncSession,
    table: Table,
    columns: tuple[str, ...],
    key: str,
    rows: Iterable[Sequence[Any]],
) -> None:
    """UPDATE `columns` of the row whose `key` is the last value of each item of `rows`."""
    connection = await session.connection()
    processors = _processors(connection.dialect, table, (*columns, key))
    statement = (
        f"UPDATE {table.name} SET {', '.join(f'{name} = ?' for name in columns)} WHERE {key} = ?"
    )
    await connection.exec_driver_sql(statement, _converted(processors, rows))
