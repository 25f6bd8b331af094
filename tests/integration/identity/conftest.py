"""An app with only the identity component (on SQLite and on PostgreSQL), a protected test
route for the roles, and clocks the test moves by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, Depends

from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.runtime import Component, build_app
from pingtower.common.security import Principal, require
from pingtower.common.settings import Settings
from pingtower.identity.domain.throttle import LoginThrottle
from pingtower.identity.passwords import Passwords
from pingtower.identity.service import IdentityComponent, identity_authenticator

ADMIN_PASSWORD = "admin-password-for-tests"
# Cheap Argon2 parameters: the tests check behaviour, not the cost.
FAST_PASSWORDS = Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@dataclass
class Clocks:
    wall: datetime = field(default_factory=lambda: datetime(2026, 11, 29, 12, tzinfo=UTC))
    mono: float = 1000.0

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


class ProtectedThings(Component):
    """Stands for any service route: reading needs viewer, creating needs editor."""

    name = "things"

    @property
    def routers(self) -> Sequence[APIRouter]:
        router = APIRouter(prefix="/things")

        @router.get("")
        async def list_things(principal: Principal = Depends(require("viewer"))) -> list[str]:
            return []

        @router.post("", status_code=201)
        async def create_thing(
            principal: Principal = Depends(require("editor")),
        ) -> dict[str, str]:
            return {"workspace": principal.tenant, "by": principal.subject}

        return (router,)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database, SQLite then PostgreSQL. Synchronous, so that it may ask for the async
    `pg_url` fixture by name."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/identity.sqlite3"
    return str(request.getfixturevalue("pg_url"))


# For behaviour that lives above the database (throttling, cookie flags, input validation,
# role checks): SQLite alone, which keeps the suite fast.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@dataclass
class Running:
    client: httpx.AsyncClient
    identity: IdentityComponent
    clocks: Clocks

    async def login(self, username: str, password: str) -> httpx.Response:
        return await self.client.post(
            "/api/v1/auth/login", json={"username": username, "password": password}
        )

    async def token(self, username: str, password: str) -> str:
        response = await self.login(username, password)
        assert response.status_code == 200, response.text
        # A bearer caller: the cookie the client kept must not stand in for the token.
        self.client.cookies.clear()
        token: str = response.json()["access_token"]
        return token

    async def create_user(self, admin_token: str, username: str, role: str) -> dict[str, Any]:
        response = await self.client.post(
            "/api/v1/users",
            json={"username": username, "password": f"{username}-password-1", "role": role},
            headers=bearer(admin_token),
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


RunIdentity = Callable[..., Any]


@pytest.fixture
def run_identity(database_url: str, tmp_path: Path) -> RunIdentity:
    """`async with run_identity(**settings) as running:` a started app; it may be run again on
    the same database (a restart)."""

    @asynccontextmanager
    async def run(base_url: str = "http://testserver", **overrides: Any) -> AsyncIterator[Running]:
        clocks = Clocks()
        settings = Settings(
            data_dir=tmp_path,
            identity_database_url=database_url,
            **{"admin_password": ADMIN_PASSWORD, **overrides},
        )
        identity = IdentityComponent(
            settings,
            passwords=FAST_PASSWORDS,
            throttle=LoginThrottle(),
            clock=lambda: clocks.wall,
            monotonic=lambda: clocks.mono,
        )
        bus = InProcessBus()
        app = build_app(
            "identity test", [identity, ProtectedThings()], bus, identity_authenticator(identity)
        )
        async with (
            LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(manager.app), base_url=base_url
            ) as client,
        ):
            yield Running(client, identity, clocks)

    return run
