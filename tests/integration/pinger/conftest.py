"""Fixtures of the Pinger's integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Iterator

import pytest

from tests.conftest import POSTGRES_URL, unavailable

MakeUrl = Callable[[], Awaitable[str]]


@pytest.fixture(params=["sqlite", "postgres"])
def make_db_url(request: pytest.FixtureRequest) -> MakeUrl:
    """A fresh database, SQLite then PostgreSQL. A synchronous fixture, so that it may ask for
    the async ones by name; the test awaits the URL."""
    if request.param == "postgres":
        return request.getfixturevalue("make_pg_database")  # type: ignore[no-any-return]
    return _ready(str(request.getfixturevalue("sqlite_url")))


@pytest.fixture(params=["sqlite", "postgres"])
def shared_db_url(request: pytest.FixtureRequest) -> MakeUrl:
    """Like make_db_url, but the PostgreSQL database is shared by the tests of a module (they
    isolate themselves by workspace): creating and dropping one per test costs seconds."""
    if request.param == "postgres":
        return _ready(str(request.getfixturevalue("module_pg_url")))
    return _ready(str(request.getfixturevalue("sqlite_url")))


def _ready(url: str) -> MakeUrl:
    async def ready() -> str:
        return url

    return ready


@pytest.fixture(scope="module")
def module_pg_url() -> Iterator[str]:
    if not POSTGRES_URL:
        unavailable("PostgreSQL (PINGTOWER_TEST_POSTGRES_URL)")
    assert POSTGRES_URL is not None
    name = f"pt_test_{uuid.uuid4().hex[:12]}"
    base = POSTGRES_URL.rstrip("/")
    if base.count("/") > 2:
        base = base.rsplit("/", 1)[0]
    try:
        asyncio.run(_admin(base, f'CREATE DATABASE "{name}"'))
    except OSError as exc:
        unavailable(f"PostgreSQL at {POSTGRES_URL} ({exc})")
    yield f"{base}/{name}"
    with contextlib.suppress(Exception):  # cleanup is best effort
        asyncio.run(_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(base: str, statement: str) -> None:
    import asyncpg

    dsn = base.replace("postgresql+asyncpg://", "postgresql://") + "/postgres"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()
