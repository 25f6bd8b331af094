"""Shared fixtures: real PostgreSQL and RabbitMQ servers named by environment variables.

`scripts/test.sh` installs and starts them and exports the variables. Without them a test that
needs a server is skipped on a developer's machine, and fails under CI=true: CI never skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

POSTGRES_URL = os.environ.get("PINGTOWER_TEST_POSTGRES_URL")  # postgresql+asyncpg://user@host:port
RABBITMQ_URL = os.environ.get("PINGTOWER_TEST_RABBITMQ_URL")  # amqp://guest:guest@127.0.0.1:5672/
IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(what: str) -> None:
    """Skip locally; fail under CI, where every server must be there."""
    if IN_CI:
        pytest.fail(f"{what} is not reachable and CI=true: integration tests never skip in CI")
    pytest.skip(f"{what} not available (set it up with scripts/test.sh)")


async def _pg_admin(statement: str) -> None:
    import asyncpg

    assert POSTGRES_URL is not None
    dsn = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn + "/postgres" if dsn.count("/") == 2 else dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
async def make_pg_database() -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """Creates fresh, empty PostgreSQL databases and drops them after the test.

    Returns a coroutine function giving a SQLAlchemy URL (postgresql+asyncpg://...) per call.
    """
    if not POSTGRES_URL:
        unavailable("PostgreSQL (PINGTOWER_TEST_POSTGRES_URL)")
    created: list[str] = []

    async def make() -> str:
        name = f"pt_test_{uuid.uuid4().hex[:12]}"
        try:
            await _pg_admin(f'CREATE DATABASE "{name}"')
        except OSError as exc:
            unavailable(f"PostgreSQL at {POSTGRES_URL} ({exc})")
        created.append(name)
        assert POSTGRES_URL is not None
        base = POSTGRES_URL.rstrip("/")
        if base.count("/") > 2:
            base = base.rsplit("/", 1)[0]
        return f"{base}/{name}"

    yield make
    for name in created:
        with contextlib.suppress(Exception):  # cleanup is best effort
            await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def pg_url(make_pg_database: Callable[[], Awaitable[str]]) -> str:
    """One fresh PostgreSQL database for the test."""
    return await make_pg_database()


@pytest.fixture
async def rabbitmq_url() -> str:
    """The RabbitMQ URL; each test isolates itself with its own names (see `namespace`)."""
    if not RABBITMQ_URL:
        unavailable("RabbitMQ (PINGTOWER_TEST_RABBITMQ_URL)")
    assert RABBITMQ_URL is not None
    import aio_pika

    try:
        connection = await asyncio.wait_for(aio_pika.connect(RABBITMQ_URL), 10)
    except Exception as exc:
        unavailable(f"RabbitMQ at {RABBITMQ_URL} ({exc})")
    await connection.close()
    return RABBITMQ_URL


@pytest.fixture
def namespace() -> str:
    """A unique prefix for broker names (exchanges, queues) so tests never see each other."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/test.sqlite3"


KEYCLOAK_URL = os.environ.get("PINGTOWER_TEST_KEYCLOAK_URL")  # http://admin:PASSWORD@127.0.0.1:PORT


@pytest.fixture
async def keycloak_url() -> str:
    """The test Keycloak (scripts/keycloak.sh) with the realm `pingtower` from deploy/keycloak/;
    the user part of the URL is the master realm's bootstrap admin."""
    if not KEYCLOAK_URL:
        unavailable("Keycloak (PINGTOWER_TEST_KEYCLOAK_URL)")
    assert KEYCLOAK_URL is not None
    from urllib.parse import urlsplit

    import httpx

    parts = urlsplit(KEYCLOAK_URL)
    base = f"{parts.scheme}://{parts.hostname}:{parts.port}"
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(f"{base}/realms/pingtower/.well-known/openid-configuration")
            response.raise_for_status()
    except Exception as exc:
        unavailable(f"Keycloak at {base} ({exc})")
    return KEYCLOAK_URL
