"""Throwaway PostgreSQL databases for the benchmarks, on the test server: created for a run and
dropped (connections and all) at its end."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg


def server_url(url: str) -> str:
    """The server part of a SQLAlchemy URL (`postgresql+asyncpg://u:p@host:port`), without the
    database a URL like PINGTOWER_TEST_POSTGRES_URL may name."""
    base = url.rstrip("/")
    if base.count("/") > 2:
        base = base.rsplit("/", 1)[0]
    return base


async def admin_execute(server: str, statement: str) -> None:
    """One statement on the server's `postgres` database (CREATE / DROP DATABASE cannot run in
    the database they name)."""
    dsn = server_url(server).replace("postgresql+asyncpg://", "postgresql://") + "/postgres"
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def create_database(server: str, name: str) -> str:
    """Creates `name`; returns its SQLAlchemy URL."""
    await admin_execute(server, f'CREATE DATABASE "{name}"')
    return f"{server_url(server)}/{name}"


async def drop_database(server: str, name: str) -> None:
    await admin_execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def throwaway_database(server: str, prefix: str) -> AsyncIterator[str]:
    """A new database's SQLAlchemy URL for the block; dropped afterwards."""
    name = unique_name(prefix)
    url = await create_database(server, name)
    try:
        yield url
    finally:
        await drop_database(server, name)
