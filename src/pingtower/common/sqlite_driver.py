"""aiosqlite with one trip to the connection's thread per statement, for SQLAlchemy.

aiosqlite runs every call on the connection's own thread, and SQLAlchemy's adapter makes three to
four such calls per statement (create the cursor, execute, fetch the rows, close). Each trip wakes
the thread and hands the GIL over and back, which cost the embedded process more CPU than most
statements themselves (0.7 to 1.1 ms of CPU for a transaction of one `SELECT 1`, nine trips;
bench/README.md, performance round 3). Here a cursor executes and fetches every row in one trip;
creating and closing it are done on the event loop's thread, which is safe because SQLAlchemy
never uses one connection from two places at once (its adapter serialises a connection's
statements) and SQLite's own mutex guards the handle (opened with `check_same_thread=False`).

Rows are fetched in full, as SQLAlchemy's adapter already does for every cursor that is not
server-side; nothing in PingTower streams results from SQLite.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import aiosqlite

_Description = tuple[tuple[Any, ...], ...] | None
_Outcome = tuple[_Description, int, int | None, list[Any]]


def _execute(
    cursor: sqlite3.Cursor, sql: str, parameters: Sequence[Any] | dict[str, Any] | None
) -> _Outcome:
    """On the connection's thread: run the statement to the end."""
    cursor.execute(sql, () if parameters is None else parameters)
    rows = cursor.fetchall() if cursor.description is not None else []
    return cursor.description, cursor.rowcount, cursor.lastrowid, rows


def _executemany(cursor: sqlite3.Cursor, sql: str, parameters: Iterable[Any]) -> _Outcome:
    cursor.executemany(sql, parameters)
    return cursor.description, cursor.rowcount, cursor.lastrowid, []


class OneTripCursor:
    """The part of `aiosqlite.Cursor` that SQLAlchemy's adapter uses."""

    def __init__(self, connection: OneTripConnection) -> None:
        self._connection = connection
        self._cursor = connection._conn.cursor()  # no I/O: a Python object
        self._rows: deque[Any] = deque()
        self.description: _Description = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    async def __aenter__(self) -> OneTripCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def execute(
        self, sql: str, parameters: Sequence[Any] | dict[str, Any] | None = None
    ) -> OneTripCursor:
        self._took(await self._connection.run(partial(_execute, self._cursor, sql, parameters)))
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> OneTripCursor:
        self._took(await self._connection.run(partial(_executemany, self._cursor, sql, parameters)))
        return self

    def _took(self, outcome: _Outcome) -> None:
        self.description, self.rowcount, self.lastrowid, rows = outcome
        self._rows = deque(rows)

    async def fetchone(self) -> Any | None:
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = min(self.arraysize if size is None else size, len(self._rows))
        return [self._rows.popleft() for _ in range(count)]

    async def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def close(self) -> None:
        # Its statement ran to the end in `execute` (and was reset there): nothing waits here.
        self._rows.clear()
        self._cursor.close()


class OneTripConnection(aiosqlite.Connection):
    def cursor(self) -> OneTripCursor:  # type: ignore[override]
        return OneTripCursor(self)

    async def rollback(self) -> None:
        # The pool rolls back every connection it takes back, mostly after a COMMIT: with no
        # transaction open (SQLite's autocommit flag, read without a trip) there is nothing
        # to roll back, and the trip would be a fourth of a small transaction's cost.
        if self._conn.in_transaction:
            await super().rollback()

    async def run(self, function: Callable[[], _Outcome]) -> _Outcome:
        """`function` on the connection's thread (aiosqlite's `_execute` is untyped)."""
        outcome: _Outcome = await self._execute(function)  # type: ignore[no-untyped-call]
        return outcome


def connector(database: str, **kwargs: Any) -> Callable[[], Any]:
    """An `async_creator` for SQLAlchemy's aiosqlite dialect: `create_async_engine(url,
    async_creator=connector(path, timeout=30))`. Takes `sqlite3.connect`'s arguments."""
    kwargs["check_same_thread"] = False  # cursors are made and closed on the loop's thread

    async def connect() -> OneTripConnection:
        connection = OneTripConnection(lambda: sqlite3.connect(database, **kwargs), 64)
        # Like SQLAlchemy's own aiosqlite connect: a forgotten connection must not keep the
        # process alive at exit.
        connection._thread.daemon = True
        await connection
        return connection

    return connect
