"""Who is calling, as the built-in login knows it: a session (the browser's cookie, or
`Authorization: Bearer pts_...`) or an API key (`Authorization: Bearer ptk_...`).

An explicit Authorization header wins over the cookie, and a bearer credential of another shape
(the bootstrap token, a Keycloak JWT) is left to the next authenticator of a FirstOf."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pingtower.common.events import utcnow
from pingtower.common.security import ApiKeyAuthenticator, ApiKeyLookup, Authenticator, Principal
from pingtower.identity.domain.tokens import looks_like_session, session_digest
from pingtower.identity.store import sessions as session_store

SESSION_COOKIE = "pingtower_session"


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def presented_session(request: Request) -> str | None:
    """The session token the request carries, if any: the bearer token when it has a session's
    shape, else (only without an Authorization header) the session cookie."""
    if "authorization" in request.headers:
        token = bearer_token(request)
        return token if token is not None and looks_like_session(token) else None
    cookie = request.cookies.get(SESSION_COOKIE)
    return cookie if cookie is not None and looks_like_session(cookie) else None


class IdentityAuthenticator(Authenticator):
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        api_keys: ApiKeyLookup,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.api_keys = ApiKeyAuthenticator(api_keys)
        self.clock = clock

    async def authenticate(self, request: Request) -> Principal | None:
        token = presented_session(request)
        if token is not None:
            async with self.sessions() as session:
                return await session_store.principal(session, session_digest(token), self.clock())
        return await self.api_keys.authenticate(request)
