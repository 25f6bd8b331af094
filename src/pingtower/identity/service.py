"""Wires the built-in login: its database, the login/users/API-key routers, the authenticator,
and the first-start admin account."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from fastapi import APIRouter

from pingtower.common import db
from pingtower.common.events import utcnow
from pingtower.common.http.app import ReadinessCheck
from pingtower.common.messaging.bus import Bus
from pingtower.common.runtime import Component
from pingtower.common.security import Authenticator, SqlApiKeys, api_keys_router
from pingtower.common.settings import Settings
from pingtower.identity.api.auth import build_auth_router
from pingtower.identity.api.users import build_users_router
from pingtower.identity.authenticator import IdentityAuthenticator
from pingtower.identity.bootstrap import NewAdmin, banner_lines, ensure_admin
from pingtower.identity.domain.throttle import LoginThrottle
from pingtower.identity.login import Logins
from pingtower.identity.passwords import Passwords
from pingtower.identity.store import tables

MIGRATIONS = Path(__file__).parent / "migrations"


def identity_database_url(settings: Settings) -> str:
    if settings.identity_database_url is not None:
        return settings.identity_database_url
    return f"sqlite+aiosqlite:///{(settings.data_dir / 'identity.sqlite3').resolve()}"


class IdentityComponent(Component):
    name = "identity"

    def __init__(
        self,
        settings: Settings,
        *,
        passwords: Passwords | None = None,
        throttle: LoginThrottle | None = None,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = identity_database_url(settings)
        self.admin_password = (
            settings.admin_password.get_secret_value() if settings.admin_password else None
        )
        self.engine = db.create_engine(self.url)
        self.sessions = db.session_factory(self.engine)
        self.passwords = passwords or Passwords()
        self.clock = clock
        self.api_keys = SqlApiKeys(self.sessions, tables.api_keys)
        self.logins = Logins(
            self.sessions,
            self.passwords,
            throttle or LoginThrottle(),
            lifetime=timedelta(hours=settings.session_hours),
            clock=clock,
            monotonic=monotonic,
        )
        self.authenticator = IdentityAuthenticator(self.sessions, self.api_keys, clock=clock)
        # Set by prepare() on the start that created the admin; read once by admin_banner().
        self.new_admin: NewAdmin | None = None

    @property
    def routers(self) -> Sequence[APIRouter]:
        return (
            build_auth_router(self.logins),
            build_users_router(self.sessions, self.passwords, clock=self.clock),
            api_keys_router(self.api_keys, clock=self.clock),
        )

    @property
    def readiness(self) -> Mapping[str, ReadinessCheck]:
        async def database() -> None:
            await db.ping(self.engine)

        return {"identity-database": database}

    async def prepare(self) -> None:
        await db.migrate(self.url, MIGRATIONS)
        self.new_admin = await ensure_admin(
            self.sessions, self.passwords, self.admin_password, self.clock()
        )

    async def stop(self) -> None:
        await self.engine.dispose()


def identity_authenticator(component: IdentityComponent) -> Authenticator:
    """Sessions and API keys of the built-in login; combine with others through FirstOf."""
    return component.authenticator


def admin_banner(component: IdentityComponent) -> list[str]:
    """Lines about the admin account for the start-up banner: only on the start that created
    it, and only once (the generated password is then forgotten)."""
    lines = banner_lines(component.new_admin)
    component.new_admin = None
    return lines


def build(settings: Settings, bus: Bus, roles: Collection[str]) -> list[Component]:
    """The identity component (it uses no bus: nothing else needs its events)."""
    return [IdentityComponent(settings)]
