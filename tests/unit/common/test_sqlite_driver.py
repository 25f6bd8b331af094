"""The embedded mode's SQLite driver: aiosqlite with one trip to the connection's thread per
statement. It must behave exactly like aiosqlite under SQLAlchemy (rows, counts, RETURNING,
errors, streaming, lock waits that do not block the event loop), with fewer trips."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from pingtower.common import sqlite_driver
from pingtower.common.db import (
    WRITER_CACHE_KIB,
    WRITER_CHECKPOINT_PAGES,
    consumer_engine,
    create_engine,
    read_only_engine,
    session_factory,
)

metadata = sa.MetaData()
things = sa.Table(
    "things",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(50), nullable=False, unique=True),
    sa.Column("size", sa.Integer, nullable=False, default=0),
)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/driver.sqlite3")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


class Trips:
    """Counts the calls run on connections' threads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original: Any = sqlite_driver.OneTripConnection._execute

        async def counted(connection: Any, function: Any, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await original(connection, function, *args, **kwargs)

        monkeypatch.setattr(sqlite_driver.OneTripConnection, "_execute", counted)


async def test_a_statement_with_rows_is_one_trip_to_the_connections_thread(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with engine.begin() as conn:
        await conn.execute(things.insert(), [{"name": "a"}, {"name": "b"}])
        trips = Trips(monkeypatch)
        rows = (await conn.execute(sa.select(things.c.name).order_by(things.c.name))).all()
        assert trips.count == 1  # aiosqlite under SQLAlchemy: cursor, execute, fetch, close
    assert [row.name for row in rows] == ["a", "b"]


async def test_rows_counts_and_ids_come_back_as_with_aiosqlite(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        first = await conn.execute(things.insert().values(name="first"))
        assert first.inserted_primary_key is not None
        assert first.inserted_primary_key[0] == 1
        await conn.execute(things.insert(), [{"name": f"n{i}", "size": i} for i in range(5)])
        updated = await conn.execute(sa.update(things).where(things.c.size >= 3).values(size=0))
        assert updated.rowcount == 2
        sizes = (await conn.execute(sa.select(things.c.size).order_by(things.c.id))).scalars()
        assert list(sizes) == [0, 0, 1, 2, 0, 0]
        one = (await conn.execute(sa.select(things.c.name).where(things.c.id == 2))).one()
        assert one.name == "n0"
        none = (await conn.execute(sa.select(things).where(things.c.id == 99))).first()
        assert none is None


async def test_a_many_row_insert_returns_every_row_in_parameter_order(engine: AsyncEngine) -> None:
    names = [f"row-{i:03d}" for i in range(300)][::-1]
    async with engine.begin() as conn:
        returned = await conn.execute(
            things.insert().returning(things.c.name, sort_by_parameter_order=True),
            [{"name": name} for name in names],
        )
        assert [row.name for row in returned] == names


async def test_a_constraint_violation_raises_and_the_connection_stays_usable(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        await conn.execute(things.insert().values(name="taken"))
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(things.insert().values(name="taken"))
    async with engine.begin() as conn:
        count = await conn.scalar(sa.select(sa.func.count()).select_from(things))
    assert count == 1


async def test_streamed_results_deliver_every_row_in_chunks(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(things.insert(), [{"name": f"s{i:03d}"} for i in range(250)])
    async with engine.connect() as conn:
        result = await conn.stream(sa.select(things.c.name).order_by(things.c.name))
        chunks = [list(chunk) async for chunk in result.partitions(100)]
    assert [len(chunk) for chunk in chunks] == [100, 100, 50]
    assert chunks[0][0].name == "s000"


async def test_waiting_for_another_writer_does_not_block_the_event_loop(
    engine: AsyncEngine,
) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticking = asyncio.create_task(ticker())
    try:
        async with engine.connect() as holder:
            await holder.begin()  # BEGIN IMMEDIATE: holds SQLite's write lock
            await holder.execute(things.insert().values(name="held"))
            waiter = asyncio.create_task(_insert(engine, "waiting"))
            before, started = ticks, time.monotonic()
            while time.monotonic() - started < 0.3:  # the waiter sits in its busy timeout
                await asyncio.sleep(0.02)
            assert not waiter.done()
            assert ticks - before >= 5  # the loop kept running meanwhile
            await holder.commit()
        await asyncio.wait_for(waiter, 30)
    finally:
        ticking.cancel()
    async with engine.connect() as conn:
        names = (await conn.execute(sa.select(things.c.name).order_by(things.c.id))).scalars()
        assert list(names) == ["held", "waiting"]


async def _insert(engine: AsyncEngine, name: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(things.insert().values(name=name))


async def test_an_in_memory_database_works_too() -> None:
    engine = create_engine("sqlite+aiosqlite:///:memory:")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            await conn.execute(things.insert().values(name="m"))
            assert await conn.scalar(sa.select(things.c.name)) == "m"
    finally:
        await engine.dispose()


async def test_a_transaction_is_two_trips_and_a_rollback_still_undoes_one(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with engine.connect():
        pass  # the pool's connection exists (its pragmas ran)
    trips = Trips(monkeypatch)
    async with engine.begin() as conn:
        await conn.execute(sa.select(1))
    # BEGIN with the SELECT, COMMIT; the pool's reset after a COMMIT needs no ROLLBACK trip.
    assert trips.count == 2
    async with engine.connect() as conn:
        await conn.execute(things.insert().values(name="undone"))
        await conn.rollback()
    async with engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(things)) == 0


async def test_the_first_statement_of_a_transaction_takes_the_write_lock(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as holder:
        await holder.begin()
        await holder.execute(sa.select(1))  # a read, yet BEGIN IMMEDIATE ran before it
        raw = (await holder.get_raw_connection()).driver_connection
        assert raw is not None
        assert raw._conn.in_transaction
        other = impatient_engine(engine)
        try:
            with pytest.raises(OperationalError, match="locked"):
                async with other.begin() as conn:
                    await conn.execute(things.insert().values(name="blocked"))
        finally:
            await other.dispose()
        await holder.execute(things.insert().values(name="holder"))
        await holder.commit()
    async with engine.connect() as conn:
        names = (await conn.execute(sa.select(things.c.name))).scalars()
        assert list(names) == ["holder"]


async def test_a_transaction_without_statements_takes_no_trip_and_no_lock(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with engine.connect(), engine.connect():
        pass  # two connections in the pool, their pragmas run
    trips = Trips(monkeypatch)
    async with engine.connect() as idle:
        await idle.begin()
        # Another writer is not kept waiting by a transaction that has done nothing yet
        await _insert(engine, "meanwhile")
        await idle.commit()
    assert trips.count == 2  # the other transaction's INSERT (with its BEGIN) and COMMIT


async def test_a_begin_that_fails_fails_the_first_statement_and_is_tried_again(
    engine: AsyncEngine,
) -> None:
    other = impatient_engine(engine)
    try:
        async with engine.connect() as holder:
            await holder.begin()
            await holder.execute(things.insert().values(name="first"))
            async with other.connect() as conn:
                await conn.begin()
                with pytest.raises(OperationalError, match="locked"):
                    await conn.execute(sa.select(1))
                await holder.commit()
                # The lock is free now: the same transaction begins with its next statement
                await conn.execute(things.insert().values(name="second"))
                raw = (await conn.get_raw_connection()).driver_connection
                assert raw is not None
                assert raw._conn.in_transaction
                await conn.commit()
    finally:
        await other.dispose()
    async with engine.connect() as conn:
        names = (await conn.execute(sa.select(things.c.name).order_by(things.c.id))).scalars()
        assert list(names) == ["first", "second"]


def impatient_engine(engine: AsyncEngine) -> AsyncEngine:
    """Another engine on the same database whose connections wait 50 ms for a lock."""
    other = create_engine(str(engine.url))

    def wait_briefly(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA busy_timeout=50")
        cursor.close()

    sa.event.listen(other.sync_engine, "connect", wait_briefly)
    return other


async def _driver(conn: Any) -> sqlite_driver.OneTripConnection:
    raw = (await conn.get_raw_connection()).driver_connection
    assert isinstance(raw, sqlite_driver.OneTripConnection)
    return raw


def _deferred_insert(driver: sqlite_driver.OneTripConnection, *names: str) -> None:
    def write() -> None:
        driver._conn.executemany(
            "INSERT INTO things (name, size) VALUES (?, 0)", [(n,) for n in names]
        )

    driver.defer(write)


async def _names(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(sa.select(things.c.name).order_by(things.c.id))).scalars())


async def test_a_deferred_write_runs_in_the_trip_of_the_commit(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with engine.connect():
        pass  # the pool's connection exists (its pragmas ran)
    trips = Trips(monkeypatch)
    async with engine.begin() as conn:
        await conn.execute(sa.select(1))
        _deferred_insert(await _driver(conn), "deferred")
        assert trips.count == 1  # not run yet
    assert trips.count == 2  # BEGIN with the SELECT; the write with the COMMIT
    assert await _names(engine) == ["deferred"]


async def test_a_deferred_write_runs_before_the_next_statement_which_sees_it(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with engine.connect():
        pass
    trips = Trips(monkeypatch)
    async with engine.begin() as conn:
        # Deferred before the transaction's first statement: BEGIN, the write, the statement
        _deferred_insert(await _driver(conn), "a", "b")
        await conn.execute(things.insert().values(name="c"))
        count = await conn.scalar(sa.select(sa.func.count()).select_from(things))
        assert count == 3
        assert trips.count == 2
    assert trips.count == 3
    assert await _names(engine) == ["a", "b", "c"]


async def test_a_rollback_drops_the_deferred_writes_not_run_yet(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.begin()
        await conn.execute(things.insert().values(name="undone"))
        _deferred_insert(await _driver(conn), "never")
        await conn.rollback()
        # The connection's next transaction does not run them either
        await conn.begin()
        await conn.execute(things.insert().values(name="kept"))
        await conn.commit()
    assert await _names(engine) == ["kept"]


async def test_a_deferred_write_that_fails_fails_the_commit_and_nothing_is_committed(
    engine: AsyncEngine,
) -> None:
    await _insert(engine, "taken")

    async def insert_then_defer_a_taken_name() -> None:
        async with engine.begin() as conn:
            await conn.execute(things.insert().values(name="with it"))
            _deferred_insert(await _driver(conn), "new", "taken")  # a unique name again

    with pytest.raises(IntegrityError):
        await insert_then_defer_a_taken_name()
    assert await _names(engine) == ["taken"]
    await _insert(engine, "after")  # the connection is usable
    assert await _names(engine) == ["taken", "after"]


async def test_a_deferred_write_that_fails_fails_the_next_statement(engine: AsyncEngine) -> None:
    await _insert(engine, "taken")
    async with engine.connect() as conn:
        await conn.begin()
        _deferred_insert(await _driver(conn), "taken")
        with pytest.raises(IntegrityError):
            await conn.execute(sa.select(1))
        await conn.rollback()
    assert await _names(engine) == ["taken"]


async def test_deferred_writes_wait_for_a_begin_that_failed_and_run_after_it(
    engine: AsyncEngine,
) -> None:
    other = impatient_engine(engine)
    try:
        async with engine.connect() as holder:
            await holder.begin()
            await holder.execute(things.insert().values(name="first"))
            async with other.connect() as conn:
                await conn.begin()
                _deferred_insert(await _driver(conn), "deferred")
                with pytest.raises(OperationalError, match="locked"):
                    await conn.execute(sa.select(1))
                await holder.commit()
                await conn.execute(things.insert().values(name="second"))
                await conn.commit()
    finally:
        await other.dispose()
    assert await _names(engine) == ["first", "deferred", "second"]


def _plain_insert(driver: sqlite_driver.OneTripConnection, name: str) -> None:
    """On the connection's thread: an INSERT of `name`."""
    driver._conn.execute("INSERT INTO things (name, size) VALUES (?, 0)", (name,)).close()


async def test_a_plain_transaction_commits_in_two_trips_and_then_calls_back(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with engine.connect():
        pass  # the pool's connection exists (its pragmas ran)
    trips = Trips(monkeypatch)
    called: list[str] = []
    async with sqlite_driver.plain_transaction(engine) as transaction:
        driver = transaction.driver
        await driver.run(lambda: _plain_insert(driver, "a"))
        _deferred_insert(driver, "b")
        transaction.after_commit(lambda: called.append("committed"))
        assert called == []
    assert trips.count == 2  # BEGIN with the INSERT; the deferred write with the COMMIT
    assert called == ["committed"]
    assert await _names(engine) == ["a", "b"]
    # The connection went back to the pool, outside any transaction
    assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert not driver._conn.in_transaction


async def test_a_plain_transaction_that_raises_is_rolled_back_without_its_callbacks(
    engine: AsyncEngine,
) -> None:
    called: list[str] = []

    async def fail_after_writing() -> None:
        async with sqlite_driver.plain_transaction(engine) as transaction:
            driver = transaction.driver
            await driver.run(lambda: _plain_insert(driver, "x"))
            _deferred_insert(driver, "y")
            transaction.after_commit(lambda: called.append("committed"))
            raise RuntimeError("effect failed")

    with pytest.raises(RuntimeError, match="effect failed"):
        await fail_after_writing()
    assert called == []
    assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    await _insert(engine, "after")  # the connection is usable, and kept no lock
    assert await _names(engine) == ["after"]


async def test_a_plain_transaction_whose_commit_fails_commits_nothing(
    engine: AsyncEngine,
) -> None:
    await _insert(engine, "taken")
    called: list[str] = []

    async def write_a_taken_name_with_the_commit() -> None:
        async with sqlite_driver.plain_transaction(engine) as transaction:
            driver = transaction.driver
            await driver.run(lambda: _plain_insert(driver, "x"))
            _deferred_insert(driver, "taken")  # a unique name again: fails with the COMMIT
            transaction.after_commit(lambda: called.append("committed"))

    with pytest.raises(sqlite3.IntegrityError):
        await write_a_taken_name_with_the_commit()
    assert called == []
    assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert await _names(engine) == ["taken"]


@pytest.fixture
async def reader(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    found = read_only_engine(str(engine.url), engine)
    assert found is not engine
    yield found
    await found.dispose()


@pytest.mark.parametrize("here", [False, True], ids=["on-its-thread", "on-the-loops-thread"])
async def test_a_read_only_transaction_takes_no_write_lock_and_reads_its_snapshot(
    engine: AsyncEngine, reader: AsyncEngine, here: bool
) -> None:
    """Wherever its statements run (`reads_on_this_thread`): a read on the loop's thread that
    waited for the writer's lock would hold the loop, and so the writer, until the timeout."""
    await _insert(engine, "before")
    other = impatient_engine(engine)  # no busy timeout: a writer kept waiting fails at once
    where = sqlite_driver.reads_on_this_thread() if here else contextlib.nullcontext()
    try:
        with where:
            async with reader.connect() as conn:
                await conn.begin()
                names = (await conn.execute(sa.select(things.c.name))).scalars()
                assert list(names) == ["before"]
                raw = (await conn.get_raw_connection()).driver_connection
                assert raw is not None
                assert raw._conn.in_transaction
                # a writer beside it is not kept waiting, and the reader's snapshot stays as it was
                await _insert(other, "meanwhile")
                count = sa.select(sa.func.count()).select_from(things)
                assert await conn.scalar(count) == 1
                await conn.commit()
                assert await conn.scalar(count) == 2
                await conn.rollback()
            async with engine.connect() as holder:
                await holder.begin()
                await holder.execute(things.insert().values(name="uncommitted"))
                async with reader.connect() as conn:  # nor is a reader kept waiting by a writer
                    assert await conn.scalar(count) == 2
                await holder.commit()
    finally:
        await other.dispose()


async def test_a_read_only_transaction_refuses_to_write(
    engine: AsyncEngine, reader: AsyncEngine
) -> None:
    async with reader.connect() as conn:
        with pytest.raises(OperationalError, match="readonly"):
            await conn.execute(things.insert().values(name="refused"))
        await conn.rollback()
    sessions = session_factory(reader)
    async with sessions() as session:
        with pytest.raises(OperationalError, match="readonly"):
            await session.execute(sa.update(things).values(size=1))
    async with engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(things)) == 0


async def test_a_read_only_transaction_begins_in_its_first_statements_trip(
    reader: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with reader.connect() as conn:  # the pool's connection opened (and set) first
        await conn.execute(sa.select(1))
    trips = Trips(monkeypatch)
    async with reader.connect() as conn:
        await conn.execute(sa.select(1))
        assert trips.count == 1
        await conn.commit()
    assert trips.count == 2


def test_elsewhere_read_only_sessions_use_the_writers_engine(engine: AsyncEngine) -> None:
    url = "postgresql+asyncpg://user:secret@127.0.0.1/db"
    assert read_only_engine(url, engine) is engine


async def test_transactions_one_after_another_keep_to_the_connection_given_back_last(
    engine: AsyncEngine,
) -> None:
    """A connection's page cache lasts until another connection commits: after two
    transactions overlapped, the next ones take the connection given back last, not turns."""
    async with engine.connect() as first:
        first_driver = await _driver(first)
        async with engine.connect() as second:
            second_driver = await _driver(second)
    assert first_driver is not second_driver
    for name in ("a", "b", "c"):
        async with engine.begin() as conn:
            assert await _driver(conn) is first_driver  # given back after `second`
            await conn.execute(things.insert().values(name=name))


async def test_writer_connections_keep_a_larger_cache_and_checkpoint_less_often(
    engine: AsyncEngine,
) -> None:
    reader = read_only_engine(str(engine.url), engine)
    try:
        async with engine.connect() as writer, reader.connect() as read:
            assert await writer.scalar(sa.text("PRAGMA cache_size")) == -WRITER_CACHE_KIB
            checkpoint = await writer.scalar(sa.text("PRAGMA wal_autocheckpoint"))
            assert checkpoint == WRITER_CHECKPOINT_PAGES
            # A reader's cache is emptied by every writer's commit: SQLite's default
            assert await read.scalar(sa.text("PRAGMA cache_size")) == -2000
    finally:
        await reader.dispose()


async def test_a_writer_engine_keeps_two_connections_and_closes_those_opened_beyond(
    engine: AsyncEngine,
) -> None:
    """Overlapping transactions get a connection each; given back, two stay open (each may
    hold a filled page cache) and the others are closed."""
    async with contextlib.AsyncExitStack() as stack:
        drivers = [await _driver(await stack.enter_async_context(engine.connect())) for _ in "abcd"]
        assert len(set(map(id, drivers))) == 4
    assert engine.pool.checkedin() == 2  # type: ignore[attr-defined]


async def test_a_consumers_engine_keeps_its_one_writer_connection_whatever_overlaps_it(
    engine: AsyncEngine,
) -> None:
    """Its batches run on one connection (its page cache lasts until another connection
    commits), with the writer's cache, checkpoints and BEGIN IMMEDIATE, while the shared
    engine's transactions overlap them; its connection thread is named after the database."""
    own = consumer_engine(str(engine.url), engine)
    assert own is not engine
    try:
        seen = set()
        for name in ("a", "b", "c"):
            # a connection of the shared engine checked out meanwhile (as a relay's poll)
            async with engine.connect() as overlapping, own.begin() as conn:
                assert await _driver(overlapping) is not await _driver(conn)
                driver = await _driver(conn)
                seen.add(id(driver))
                assert driver._thread.name == "sqlite driver.sqlite3"
                await conn.execute(things.insert().values(name=name))
                assert driver._conn.in_transaction  # BEGIN IMMEDIATE: the lock from the start
            async with own.connect() as conn:
                assert await conn.scalar(sa.text("PRAGMA cache_size")) == -WRITER_CACHE_KIB
                checkpoint = await conn.scalar(sa.text("PRAGMA wal_autocheckpoint"))
                assert checkpoint == WRITER_CHECKPOINT_PAGES
        assert len(seen) == 1
        assert own.pool.checkedin() == 1  # type: ignore[attr-defined]
    finally:
        await own.dispose()


def test_elsewhere_and_in_memory_a_consumer_uses_the_shared_engine(engine: AsyncEngine) -> None:
    assert consumer_engine("postgresql+asyncpg://user:secret@127.0.0.1/db", engine) is engine
    assert consumer_engine("sqlite+aiosqlite:///:memory:", engine) is engine


@contextlib.contextmanager
def thread_errors() -> Iterator[list[BaseException | None]]:
    """The exceptions that end threads while inside (pytest only warns of them)."""
    errors: list[BaseException | None] = []
    hook = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)
    try:
        yield errors
    finally:
        threading.excepthook = hook


def test_an_answer_for_a_loop_closed_meanwhile_is_dropped_and_the_thread_goes_on(
    tmp_path: Path,
) -> None:
    """A statement still running on the connection's thread when its event loop closes (a
    task cancelled at shutdown while its trip ran) has nobody to answer: aiosqlite's worker
    died on the closed loop ("Event loop is closed", an unhandled thread exception) and the
    connection's later work never ran."""
    started = threading.Event()
    with thread_errors() as errors:
        first = asyncio.new_event_loop()
        connection = first.run_until_complete(
            sqlite_driver.connector(str(tmp_path / "closed.sqlite3"))()
        )

        def slow() -> int:
            started.set()
            time.sleep(0.3)
            return 1

        pending = first.create_task(connection.run(slow))
        first.run_until_complete(asyncio.sleep(0))
        assert started.wait(5)
        pending.cancel()
        first.run_until_complete(asyncio.gather(pending, return_exceptions=True))
        first.close()  # while `slow` still runs on the connection's thread
        time.sleep(0.5)
        assert connection._thread.is_alive()  # the worker went on to wait for more work

        second = asyncio.new_event_loop()
        try:
            assert second.run_until_complete(connection.run(lambda: 2)) == 2
            second.run_until_complete(connection.close())
        finally:
            second.close()
        connection._thread.join(5)
    assert errors == []


def test_a_connection_stopped_after_its_loop_closed_ends_its_thread_quietly(
    tmp_path: Path,
) -> None:
    """As a forgotten connection's finalizer stops it: no loop running, the last one set
    closed. aiosqlite's `stop` made its answer's future on that loop, and its worker died on
    it."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    with thread_errors() as errors:
        try:
            connection = loop.run_until_complete(
                sqlite_driver.connector(str(tmp_path / "stopped.sqlite3"))()
            )
            loop.close()
            assert connection.stop() is None  # nobody to answer
            connection._thread.join(5)
            assert not connection._thread.is_alive()
            assert connection._connection is None  # the sqlite3 connection was closed
        finally:
            asyncio.set_event_loop(None)
    assert errors == []


def _thread_of_statements(conn: Any) -> None:
    """A SQL function telling which thread ran the statement that calls it."""
    raw = conn.driver_connection
    raw._conn.create_function("pingtower_thread", 0, threading.get_ident)


async def _statement_thread(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        _thread_of_statements(await conn.get_raw_connection())
        async with conn.begin():
            found = await conn.scalar(sa.text("SELECT pingtower_thread()"))
            assert await conn.scalar(sa.select(sa.func.count()).select_from(things)) == 1
    return int(found)


async def test_reads_run_on_the_loops_thread_only_where_asked_and_only_reads(
    engine: AsyncEngine, reader: AsyncEngine
) -> None:
    await _insert(engine, "one")
    here = threading.get_ident()
    assert await _statement_thread(reader) != here  # by default on the connection's thread
    with sqlite_driver.reads_on_this_thread():
        assert await _statement_thread(reader) == here
        # a writer's transaction (BEGIN IMMEDIATE: it may wait for the lock) never does
        assert await _statement_thread(engine) != here
    assert await _statement_thread(reader) != here
