"""Async database helpers shared by the services: engines for PostgreSQL and SQLite, sessions,
portable column types and the Alembic runner.

Each service owns one database (one URL) and one migration tree; nothing here knows a service.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer, TypeDecorator, event, text
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from pingtower.common import sqlite_driver
from pingtower.common.migration_log import MigrationLog

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for long-lived rows.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both databases (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine; SQLite gets WAL, a busy timeout and foreign keys."""
    if is_sqlite(url):
        if _in_memory(url):
            return _sqlite_writer_engine(url)  # SQLAlchemy's StaticPool: one connection
        Path(url.split(":///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        # The connection given back last is taken first: a connection keeps its page
        # cache only until another connection commits, so writers taking turns on
        # several connections read every page of every transaction again (a system call
        # each, from the file or the WAL); last in, first out, the pool's connections
        # take turns only when transactions overlap. Two are kept between transactions
        # (those opened beyond for overlaps are closed when given back), so at most two
        # page caches (WRITER_CACHE_KIB) stay filled.
        return _sqlite_writer_engine(url, pool_size=2, max_overflow=8, pool_use_lifo=True)
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args={"server_settings": POSTGRES_SESSION},
    )


# PostgreSQL compiles a statement whose estimated cost passes jit_above_cost (100,000) to
# machine code first, which pays off for analytics that run for seconds. Ours run for
# milliseconds: statistics' overview of 1,000 monitors (estimated at 107,000) spent 50 of its
# 108 ms compiling, on every run.
POSTGRES_SESSION = {"jit": "off"}


def _in_memory(url: str) -> bool:
    return url.split(":///", 1)[-1] in ("", ":memory:")


def _sqlite_writer_engine(url: str, **pool: Any) -> AsyncEngine:
    """A SQLite engine for writers: the writer's cache and checkpoints, BEGIN IMMEDIATE."""
    engine = _sqlite_engine(url, **pool)
    event.listen(engine.sync_engine, "connect", _sqlite_writer_pragmas)
    # aiosqlite's default isolation issues BEGIN lazily; BEGIN IMMEDIATE avoids the
    # upgrade deadlock when two transactions read then write.
    event.listen(engine.sync_engine, "begin", _sqlite_begin_immediate)
    return engine


def consumer_engine(url: str, engine: AsyncEngine) -> AsyncEngine:
    """The engine of a database's busiest writer, a consumer applying batch after batch of
    events (`engine`: the one for `url`'s other work).

    On SQLite a second engine on the same file with one connection of its own: a connection
    keeps its page cache only until another connection commits, and on `engine`'s pool the
    consumer's batches took turns between connections with whatever overlapped them (an outbox
    relay's poll, the scheduler's reads), so batch after batch began with a cache the other
    connection's commits had emptied, and overlaps opened connections with empty caches
    (bench/README.md, performance round 17). On its own connection the cache is emptied only
    by the other writers' commits, which are rare beside it. Give it back with `dispose` (it
    is not `engine`). Elsewhere, and for an in-memory database (one connection), `engine`."""
    if not is_sqlite(url) or _in_memory(url):
        return engine
    return _sqlite_writer_engine(url, pool_size=1, max_overflow=0)


def read_only_engine(url: str, engine: AsyncEngine) -> AsyncEngine:
    """The engine for sessions that only read (`engine`: the one for `url`'s writers).

    On SQLite a second engine on the same file whose connections refuse to write (`PRAGMA
    query_only`) and whose transactions begin DEFERRED: such a transaction never takes the
    write lock, and WAL lets it read a snapshot beside the writer, where every transaction of
    `engine` (BEGIN IMMEDIATE) queues behind the writer and makes writers queue behind it.
    Give it back with `dispose` (it is not `engine`). Elsewhere `engine` itself: PostgreSQL's
    reads take no lock that holds writers."""
    if not is_sqlite(url):
        return engine
    reader = _sqlite_engine(url)
    event.listen(reader.sync_engine, "connect", _sqlite_query_only)
    event.listen(reader.sync_engine, "begin", _sqlite_begin_deferred)
    return reader


def _sqlite_engine(url: str, **pool: Any) -> AsyncEngine:
    """An engine on the embedded mode's driver with the connection settings of every one."""
    parsed = make_url(url)
    args, kwargs = parsed.get_dialect()().create_connect_args(parsed)
    engine = create_async_engine(
        url, async_creator=sqlite_driver.connector(*args, **kwargs, timeout=30), **pool
    )
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_query_only(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def _sqlite_begin_deferred(conn: Any) -> None:
    conn.exec_driver_sql(sqlite_driver.BEGIN_READ)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


# A writer connection's page cache (SQLite's default: 2 MiB), in KiB: the pages every batch
# of results goes through, such as the Pinger's 50,000 state rows (8 MiB) and its indexes'
# upper levels, then stay cached; a read connection's cache is emptied by each writer's commit.
WRITER_CACHE_KIB = 16 * 1024
# WAL pages after which a commit copies them into the database file (SQLite's default: 1,000):
# a page written by many commits in between (a state row's) is copied once.
WRITER_CHECKPOINT_PAGES = 10_000


def _sqlite_writer_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
    cursor.execute(f"PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES}")
    cursor.close()


def _sqlite_begin_immediate(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    """Raise if the database cannot answer a trivial query."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def run_migrations(url: str, script_location: Path, revision: str = "head") -> None:
    """Upgrade one service's database to `revision`. Blocking; call it from a thread."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, revision)


async def migrate(url: str, script_location: Path) -> None:
    await asyncio.to_thread(run_migrations, url, script_location)


# Arbitrary but fixed: keeps concurrent replicas from migrating one database at the same time.
_MIGRATION_LOCK = 724_311_001


def run_alembic_env(target_metadata: Any) -> None:
    """Body of every service's `migrations/env.py`: online migrations on the async engine."""
    from alembic import context

    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None
    sqlite = is_sqlite(url)

    def run(connection: Any) -> None:
        if not sqlite:
            connection.execute(text(f"SELECT pg_advisory_lock({_MIGRATION_LOCK})"))
            # The lock belongs to the session; end the transaction its SELECT began, so that
            # Alembic runs (and commits) its own transaction while we hold the lock.
            connection.commit()
        progress = MigrationLog(Path(context.script.dir).parent.name)
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=sqlite,
            on_version_apply=progress.on_version_apply,
        )
        with context.begin_transaction():
            progress.start(
                context.script,
                context.get_context().get_current_heads(),
                context.get_revision_argument(),
            )
            context.run_migrations()
        progress.finished()
        if not sqlite:
            # Only now, after the COMMIT, may a waiting replica look at the schema.
            connection.execute(text(f"SELECT pg_advisory_unlock({_MIGRATION_LOCK})"))
            connection.commit()

    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return

    async def online() -> None:
        engine = create_async_engine(url, poolclass=NullPool)
        if sqlite:
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            # The pragmas put pysqlite in autocommit mode; without an explicit BEGIN every DDL
            # statement would commit alone and a failed migration would leave half a schema.
            event.listen(engine.sync_engine, "begin", _sqlite_begin_immediate)
        async with engine.connect() as conn:
            await conn.run_sync(run)
            await conn.commit()
        await engine.dispose()

    asyncio.run(online())


AfterCommit = Callable[[], None]


def call_after_commit(session: AsyncSession, callback: AfterCommit) -> None:
    """Run `callback` once the session's current transaction commits (not on rollback)."""
    callbacks: set[AfterCommit] = session.sync_session.info.setdefault("after_commit", set())
    callbacks.add(callback)


def _install_after_commit_hook() -> None:
    from sqlalchemy.orm import Session

    @event.listens_for(Session, "after_commit")
    def _after_commit(session: Session) -> None:
        for callback in session.info.pop("after_commit", set()):
            callback()

    @event.listens_for(Session, "after_rollback")
    def _after_rollback(session: Session) -> None:
        session.info.pop("after_commit", None)


_install_after_commit_hook()
