"""Logging in and out: checks a password under throttling, opens and revokes sessions."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pingtower.common.security import Principal
from pingtower.identity.domain.throttle import LoginThrottle
from pingtower.identity.domain.tokens import mint_session, session_digest
from pingtower.identity.domain.users import normalize_username
from pingtower.identity.metrics import LOGINS
from pingtower.identity.passwords import Passwords
from pingtower.identity.store import sessions as session_store
from pingtower.identity.store import users


@dataclass(frozen=True)
class LoggedIn:
    token: str
    expires_in: int  # seconds
    principal: Principal


@dataclass(frozen=True)
class Throttled:
    retry_after: int  # whole seconds, rounded up


@dataclass(frozen=True)
class Refused:
    """Wrong username or password; which of the two is not told."""


LoginResult = LoggedIn | Throttled | Refused


class Logins:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        passwords: Passwords,
        throttle: LoginThrottle,
        *,
        lifetime: timedelta,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float],
    ) -> None:
        self.sessions = sessions
        self.passwords = passwords
        self.throttle = throttle
        self.lifetime = lifetime
        self.clock = clock
        self.monotonic = monotonic

    async def login(self, raw_username: str, password: str, address: str) -> LoginResult:
        username = normalize_username(raw_username)
        keys = (f"user:{username}", f"address:{address}")
        wait = max(self.throttle.retry_after(key, self.monotonic()) for key in keys)
        if wait > 0:
            LOGINS.labels("throttled").inc()
            return Throttled(max(1, math.ceil(wait)))
        async with self.sessions() as session:
            user = await users.by_username(session, username)
        # Unknown users are checked against a dummy hash: the same work, the same answer time.
        stored = user.password_hash if user is not None else None
        if user is None or not await self.passwords.verify_async(stored, password):
            failed_at = self.monotonic()
            for key in keys:
                self.throttle.failed(key, failed_at)
            LOGINS.labels("invalid").inc()
            return Refused()
        for key in keys:
            self.throttle.succeeded(key)
        now = self.clock()
        new = mint_session(now, self.lifetime)
        async with self.sessions() as session, session.begin():
            if self.passwords.needs_rehash(user.password_hash):
                rehashed = await self.passwords.hash_async(password)
                await users.change(session, user.id, now, password_hash=rehashed)
            await session_store.purge_expired(session, now)
            await session_store.add(session, user.id, new.digest, now, new.expires_at)
        LOGINS.labels("success").inc()
        return LoggedIn(
            new.token,
            int(self.lifetime.total_seconds()),
            Principal(user.username, user.tenant, frozenset({user.role})),
        )

    async def logout(self, token: str) -> None:
        async with self.sessions() as session, session.begin():
            await session_store.revoke(session, session_digest(token), self.clock())
