"""Database helpers shared by the services, on both databases they run on: UTC datetimes,
after-commit hooks, readiness pings and the Alembic runner."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from pingtower.common.db import (
    BigId,
    UtcDateTime,
    call_after_commit,
    create_engine,
    migrate,
    ping,
    session_factory,
)

metadata = sa.MetaData()
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", UtcDateTime, nullable=True),
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database of each kind: a SQLite file, and a PostgreSQL database."""
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


async def test_a_datetime_comes_back_as_the_same_instant_in_utc(engine: AsyncEngine) -> None:
    written = datetime(2026, 11, 29, 17, 30, 15, 123456, tzinfo=timezone(timedelta(hours=5.5)))
    async with engine.begin() as conn:
        await conn.execute(events.insert().values(at=written))
    async with engine.connect() as conn:
        read = (await conn.execute(sa.select(events.c.at))).scalar_one()
    assert read == written
    assert read.tzinfo is UTC
    assert read.hour == 12


async def test_a_naive_datetime_is_refused(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        with pytest.raises(StatementError, match="naive datetime"):
            await conn.execute(events.insert().values(at=datetime(2026, 11, 29, 12, 0)))


async def test_null_datetimes_stay_null(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(events.insert().values(at=None))
        assert (await conn.execute(sa.select(events.c.at))).scalar_one() is None


async def test_datetimes_given_in_other_zones_compare_by_instant_in_queries(
    engine: AsyncEngine,
) -> None:
    ten_utc_in_paris = datetime(2026, 11, 29, 11, 0, tzinfo=timezone(timedelta(hours=1)))
    eleven_utc = datetime(2026, 11, 29, 11, 0, tzinfo=UTC)
    async with engine.begin() as conn:
        await conn.execute(events.insert(), [{"at": eleven_utc}, {"at": ten_utc_in_paris}])
        cutoff = datetime(2026, 11, 29, 10, 30, tzinfo=UTC)
        earlier = (await conn.execute(sa.select(events.c.at).where(events.c.at < cutoff))).all()
        ordered = (await conn.execute(sa.select(events.c.at).order_by(events.c.at))).scalars()
        assert [row.at for row in earlier] == [ten_utc_in_paris]
        assert list(ordered) == [ten_utc_in_paris, eleven_utc]


async def test_big_ids_are_assigned_in_increasing_order(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        first = (await conn.execute(events.insert().returning(events.c.id))).scalar_one()
        second = (await conn.execute(events.insert().returning(events.c.id))).scalar_one()
    assert second > first


async def test_a_callback_runs_once_the_transaction_commits(engine: AsyncEngine) -> None:
    calls: list[str] = []
    async with session_factory(engine)() as session:
        async with session.begin():
            await session.execute(events.insert().values(at=None))
            call_after_commit(session, lambda: calls.append("committed"))
            assert calls == []
        assert calls == ["committed"]
        # A later transaction of the same session does not run it again.
        async with session.begin():
            await session.execute(events.insert().values(at=None))
    assert calls == ["committed"]


async def test_a_callback_does_not_run_when_the_transaction_rolls_back(
    engine: AsyncEngine,
) -> None:
    calls: list[str] = []
    async with session_factory(engine)() as session:
        await session.execute(events.insert().values(at=None))
        call_after_commit(session, lambda: calls.append("rolled back"))
        await session.rollback()
        assert calls == []
        # Nor is it left behind for the next commit of this session.
        await session.execute(events.insert().values(at=None))
        await session.commit()
    assert calls == []


async def test_a_callback_does_not_run_when_the_block_raises(engine: AsyncEngine) -> None:
    calls: list[str] = []

    async def failing_unit_of_work() -> None:
        async with session_factory(engine)() as session, session.begin():
            call_after_commit(session, lambda: calls.append("raised"))
            raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError, match="handler failed"):
        await failing_unit_of_work()
    assert calls == []


async def test_ping_succeeds_against_a_live_database(engine: AsyncEngine) -> None:
    await ping(engine)


async def test_ping_raises_when_postgresql_is_unreachable() -> None:
    # Port 1 on loopback: nothing listens there, so the connection is refused at once.
    engine = create_engine("postgresql+asyncpg://nobody:x@127.0.0.1:1/none")
    try:
        with pytest.raises(ConnectionRefusedError):
            await asyncio.wait_for(ping(engine), 10)
    finally:
        await engine.dispose()


async def test_sqlite_engine_creates_its_folder_and_uses_wal_with_foreign_keys(
    tmp_path: Path,
) -> None:
    path = tmp_path / "nested" / "folder" / "pinger.sqlite3"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.connect() as conn:
            journal = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar_one()
            foreign_keys = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar_one()
        assert path.exists()
        assert journal == "wal"
        assert foreign_keys == 1
    finally:
        await engine.dispose()


def write_migration_tree(root: Path) -> Path:
    """A minimal service migration tree, shaped like every service's, with two revisions."""
    versions = root / "versions"
    versions.mkdir(parents=True)
    (root / "env.py").write_text(
        textwrap.dedent(
            """
            import sqlalchemy as sa

            from pingtower.common.db import run_alembic_env

            run_alembic_env(sa.MetaData())
            """
        )
    )
    (versions / "2026_11_29_0001_initial.py").write_text(
        textwrap.dedent(
            """
            import sqlalchemy as sa
            from alembic import op

            from pingtower.common.db import BigId, UtcDateTime

            revision = "0001"
            down_revision = None

            def upgrade():
                op.create_table(
                    "things",
                    sa.Column("id", BigId, primary_key=True, autoincrement=True),
                    sa.Column("at", UtcDateTime, nullable=False),
                )
                op.create_index("ix_things_at", "things", ["at"])
            """
        )
    )
    (versions / "2026_11_29_0002_name.py").write_text(
        textwrap.dedent(
            """
            import sqlalchemy as sa
            from alembic import op

            revision = "0002"
            down_revision = "0001"

            def upgrade():
                op.add_column("things", sa.Column("name", sa.String(100), nullable=True))
            """
        )
    )
    return root


async def test_migrate_brings_a_database_to_head_and_is_idempotent(
    database_url: str, tmp_path: Path
) -> None:
    tree = write_migration_tree(tmp_path / "migrations")
    await migrate(database_url, tree)
    await migrate(database_url, tree)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            version = await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
            columns = await conn.run_sync(
                lambda sync: {c["name"] for c in sa.inspect(sync).get_columns("things")}
            )
        assert version.scalar_one() == "0002"
        assert columns == {"id", "at", "name"}
    finally:
        await engine.dispose()


def write_revision_0003(tree: Path, *, broken: bool) -> None:
    statement = 'op.execute("THIS IS NOT SQL")' if broken else "pass"
    (tree / "versions" / "2026_11_29_0003_half.py").write_text(
        textwrap.dedent(
            f"""
            import sqlalchemy as sa
            from alembic import op

            revision = "0003"
            down_revision = "0002"

            def upgrade():
                op.create_table("half", sa.Column("id", sa.Integer, primary_key=True))
                {statement}
            """
        )
    )


async def test_a_revision_that_fails_half_way_can_be_fixed_and_applied_again(
    database_url: str, tmp_path: Path
) -> None:
    # A revision that fails must leave none of its changes behind: otherwise, once it is fixed,
    # every start fails on the table its first half created. (SQLite's DDL is transactional too.)
    tree = write_migration_tree(tmp_path / "migrations")
    write_revision_0003(tree, broken=True)
    with pytest.raises(sa.exc.DBAPIError):
        await migrate(database_url, tree)

    write_revision_0003(tree, broken=False)
    await migrate(database_url, tree)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            version = await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
            assert version.scalar_one() == "0003"
    finally:
        await engine.dispose()


async def run_migrations_in_a_process(url: str, tree: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from pathlib import Path; from pingtower.common.db import run_migrations; "
        "run_migrations(sys.argv[1], Path(sys.argv[2]))",
        url,
        str(tree),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 60)
    except TimeoutError:
        process.kill()
        raise
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")[-2000:]


@pytest.mark.postgres
async def test_replicas_starting_together_migrate_postgresql_once(
    pg_url: str, tmp_path: Path
) -> None:
    # Replicas of a service (separate processes) start at the same moment and all run the
    # migrations: the advisory lock must make the later ones find the work done, not fail on
    # tables that the first one created.
    tree = write_migration_tree(tmp_path / "migrations")
    results = await asyncio.gather(*(run_migrations_in_a_process(pg_url, tree) for _ in range(3)))
    assert [output for code, output in results if code != 0] == []
    engine = create_engine(pg_url)
    try:
        async with engine.connect() as conn:
            version = await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
            assert version.scalars().all() == ["0002"]
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_the_migration_lock_is_released_only_after_the_migration_committed(
    pg_url: str, tmp_path: Path
) -> None:
    # If the advisory lock is released before the COMMIT, a replica waiting for it gets in,
    # does not see the uncommitted tables, creates them again and fails when they appear. The
    # window is too short to hit reliably with processes, so watch the order of the statements.
    tree = write_migration_tree(tmp_path / "migrations")
    steps: list[str] = []

    def on_statement(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "pg_advisory_lock" in statement:
            steps.append("lock")
        elif "pg_advisory_unlock" in statement:
            steps.append("unlock")
        elif "CREATE TABLE things" in statement:
            steps.append("create")

    def on_commit(_conn: object) -> None:
        steps.append("commit")

    sa.event.listen(sa.Engine, "before_cursor_execute", on_statement)
    sa.event.listen(sa.Engine, "commit", on_commit)
    try:
        await migrate(pg_url, tree)
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", on_statement)
        sa.event.remove(sa.Engine, "commit", on_commit)
    assert steps[0] == "lock"
    assert "create" in steps
    create, unlock = steps.index("create"), steps.index("unlock")
    assert "commit" in steps[create:unlock], f"lock released before the commit: {steps}"
