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

A transaction's `BEGIN IMMEDIATE` (common/db.py issues it when SQLAlchemy begins) takes no trip
of its own: it runs on the thread just before the transaction's first statement, in that
statement's trip, so SQLite's write lock is taken at the same point of the transaction's work
(before any of its statements). A transaction that runs no statement takes no lock and commits
nothing. A BEGIN that fails (the busy timeout ran out) fails that first statement, and the next
one tries it again. That was a trip less for every transaction of the embedded process, a sixth
of a consumer's batch (bench/README.md, performance round 6). A read-only engine's transactions
(`db.read_only_engine`) begin the same way with `BEGIN DEFERRED`, which takes no write lock.

Writes whose outcome the caller does not need back (`defer`: the evaluator's results and state
rows, the last statements of its transaction) run in the trip of the transaction's next
statement, or of its COMMIT: a trip less per batch (bench/README.md, performance round 7).
They run in the order given and before anything later in the transaction, so every statement
sees them; a rollback drops those not run yet. A deferred write that fails fails the statement
or the COMMIT it ran with, and so the transaction.

A transaction that works on the driver alone (`plain_transaction`: the Pinger's evaluator)
takes its connection from the engine's pool without SQLAlchemy's Session or Connection: those
cost more than the transaction's two trips (a Session, its transaction and its close, with
the BEGIN run through SQLAlchemy's statement machinery: about 0.6 ms of CPU against 0.2 ms;
bench/README.md, performance round 8).

The connection's thread answers each trip itself (`_answered`) and drops the answer when the
awaiting loop has closed meanwhile: aiosqlite's worker answered through the future's loop and
died on a closed one (a trip still running when a cancelled task's loop closed, or a forgotten
connection stopped by its finalizer), an unhandled "Event loop is closed" in its thread.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from contextvars import ContextVar
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import aiosqlite
import aiosqlite.core
from sqlalchemy.util import greenlet_spawn

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

_Description = tuple[tuple[Any, ...], ...] | None
_Outcome = tuple[_Description, int, int | None, list[Any]]
_NOTHING: _Outcome = (None, -1, None, [])
T = TypeVar("T")
# As common/db.py begins every transaction (its only statement without parameters)
BEGIN = "BEGIN IMMEDIATE"
# As it begins those of a read-only engine (`db.read_only_engine`): no write lock taken
BEGIN_READ = "BEGIN DEFERRED"
_BEGINS = frozenset({BEGIN, BEGIN_READ})


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


def _begun(connection: sqlite3.Connection, begin: str, function: Callable[[], T]) -> T:
    """On the connection's thread: the transaction's BEGIN, then its first statement."""
    connection.execute(begin)
    return function()


def _after(deferred: list[Callable[[], object]], function: Callable[[], T]) -> T:
    """On the connection's thread: the deferred writes, in order, then `function`."""
    for write in deferred:
        write()
    return function()


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
        if sql in _BEGINS and not parameters:
            self._connection.begin_later(sql)
            self._took(_NOTHING)
            return self
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


def _answered(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], function: Callable[[], Any]
) -> None:
    """On the connection's thread: `function`, its outcome handed to `future` on `loop`; not
    at all when the loop has closed meanwhile (nobody awaits it any more; the module's
    docstring says why aiosqlite's own hand-over is not used)."""
    try:
        answer = partial(aiosqlite.core.set_result, future, function())
    except BaseException as error:  # handed over as aiosqlite does
        answer = partial(aiosqlite.core.set_exception, future, error)
    with suppress(RuntimeError):  # the loop is closed
        loop.call_soon_threadsafe(answer)


# Set by `reads_on_this_thread`: read transactions' trips run on the calling thread
_READS_HERE: ContextVar[bool] = ContextVar("pingtower_sqlite_reads_here", default=False)


@contextmanager
def reads_on_this_thread() -> Iterator[None]:
    """Within (this task and those it starts), the statements of read transactions (a
    read-only engine's, `BEGIN DEFERRED`) run on the event loop's thread instead of the
    connection's: for paced background reads of many rows. On the connection's thread each
    row is made with the GIL, which a busy loop hands over only at its switch interval, and
    the hand-overs cost more than the rows (the statistics metrics snapshot of 50,000
    monitors: ~4.5 s of CPU alone, 10-15 s beside the checks; bench/README.md, performance
    round 15). A read in WAL mode waits for no lock, so the loop waits only for the read
    itself; keep each one short (a page of monitors)."""
    token = _READS_HERE.set(True)
    try:
        yield
    finally:
        _READS_HERE.reset(token)


def _then_stop(work: Callable[[], None]) -> object:
    """On the connection's thread: `work`, then what tells aiosqlite's worker to end."""
    work()
    return aiosqlite.core._STOP_RUNNING_SENTINEL


class OneTripConnection(aiosqlite.Connection):
    _begin_pending = False  # a BEGIN to run before the next statement
    _begin = BEGIN  # which
    _deferred: list[Callable[[], object]] | None = None  # writes to run before it

    async def _execute(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """aiosqlite's `_execute`, answered by `_answered`: the work goes to the thread
        without a future of its own, so its worker never calls into a loop."""
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._tx.put_nowait((None, partial(_answered, loop, future, partial(fn, *args, **kwargs))))
        return await future

    def stop(self) -> asyncio.Future[Any] | None:
        """aiosqlite's `stop` (close the sqlite3 connection, end the thread), answered by
        `_answered`, and with no future at all when no loop runs: called by the connection's
        finalizer, aiosqlite's took the last loop set, which may be closed."""
        self._running = False

        def close() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        future: asyncio.Future[Any] | None = None
        work: Callable[[], None] = close
        if loop is not None:
            future = loop.create_future()
            work = partial(_answered, loop, future, close)
        self._tx.put_nowait((None, partial(_then_stop, work)))
        return future

    def cursor(self) -> OneTripCursor:  # type: ignore[override]
        return OneTripCursor(self)

    def begin_later(self, begin: str = BEGIN) -> None:
        self._begin_pending = True
        self._begin = begin

    def defer(self, write: Callable[[], object]) -> None:
        """Run `write` (on the connection's thread) in the trip of the transaction's next
        statement or COMMIT, before it; dropped by a rollback."""
        if self._deferred is None:
            self._deferred = []
        self._deferred.append(write)

    async def commit(self) -> None:
        if self._begin_pending and not self._deferred:
            # the transaction ran no statement: nothing to commit
            self._begin_pending = False
            return
        if self._deferred:
            await self.run(self._conn.commit)
            return
        await super().commit()

    async def rollback(self) -> None:
        self._begin_pending = False
        self._deferred = None
        # The pool rolls back every connection it takes back, mostly after a COMMIT: with no
        # transaction open (SQLite's autocommit flag, read without a trip) there is nothing
        # to roll back, and the trip would be a fourth of a small transaction's cost.
        if self._conn.in_transaction:
            await super().rollback()

    async def run(self, function: Callable[[], T]) -> T:
        """`function` on the connection's thread (a read transaction's on the calling thread
        under `reads_on_this_thread`: in WAL mode it waits for no lock), after the
        transaction's deferred writes and its BEGIN if those are still to run. Anything run on
        the connection for a transaction goes through here."""
        here = _READS_HERE.get() and self._begin == BEGIN_READ and not self._deferred
        deferred = self._deferred
        if deferred:
            function = partial(_after, deferred, function)
            self._deferred = None
        begin = self._begin_pending
        if begin:
            function = partial(_begun, self._conn, self._begin, function)
            self._begin_pending = False
        try:
            return function() if here else await self._execute(function)
        except BaseException:
            if begin and not self._conn.in_transaction:
                # BEGIN itself failed: the next statement retries it, and the writes after it
                self._begin_pending = True
                self._deferred = deferred
            raise


async def driver_of(session: AsyncSession) -> OneTripConnection:
    """The driver connection under `session`, in its transaction (whose BEGIN may still be to
    run: everything given to its `run` runs after it). For code that works on the sqlite3
    connection itself, on the connection's thread."""
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    if not isinstance(driver, OneTripConnection):
        raise TypeError(f"not the embedded mode's SQLite driver: {type(driver).__name__}")
    return driver


class PlainTransaction:
    """A write transaction on a pooled driver connection (`plain_transaction`)."""

    def __init__(self, driver: OneTripConnection) -> None:
        self.driver = driver
        self._after_commit: list[Callable[[], object]] = []

    def after_commit(self, callback: Callable[[], object]) -> None:
        """Call `callback` once the transaction committed (not after a rollback)."""
        self._after_commit.append(callback)


@asynccontextmanager
async def plain_transaction(engine: AsyncEngine) -> AsyncIterator[PlainTransaction]:
    """A transaction (BEGIN IMMEDIATE, as every SQLite transaction of the embedded mode begins)
    on a connection of `engine`'s pool, for code that works on the driver connection alone:
    committed when the block ends, rolled back if it raises, the connection then given back
    to the pool."""
    pooled = await engine.raw_connection()
    try:
        driver = pooled.driver_connection
        if not isinstance(driver, OneTripConnection):
            raise TypeError(f"not the embedded mode's SQLite driver: {type(driver).__name__}")
        transaction = PlainTransaction(driver)
        driver.begin_later()
        try:
            yield transaction
            await driver.commit()
        except BaseException:
            await driver.rollback()
            raise
    finally:
        # The pool's return runs its reset (a rollback, which needs no trip after a COMMIT)
        # through SQLAlchemy's adapter, which must run in a greenlet.
        await greenlet_spawn(pooled.close)
    for callback in transaction._after_commit:
        callback()


def connector(database: str, **kwargs: Any) -> Callable[[], Any]:
    """An `async_creator` for SQLAlchemy's aiosqlite dialect: `create_async_engine(url,
    async_creator=connector(path, timeout=30))`. Takes `sqlite3.connect`'s arguments."""
    kwargs["check_same_thread"] = False  # cursors are made and closed on the loop's thread

    async def connect() -> OneTripConnection:
        connection = OneTripConnection(lambda: sqlite3.connect(database, **kwargs), 64)
        # Like SQLAlchemy's own aiosqlite connect: a forgotten connection must not keep the
        # process alive at exit.
        connection._thread.daemon = True
        # Named after its database, so a profile (py-spy) tells whose statements a thread ran
        connection._thread.name = f"sqlite {os.path.basename(database)}"
        await connection
        return connection

    return connect
