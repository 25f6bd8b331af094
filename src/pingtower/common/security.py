"""Who is calling: the principal (subject, workspace, roles) and the FastAPI dependencies that
require a role. How a principal is obtained (Keycloak token, built-in login, API key) is an
`Authenticator` placed on `app.state.authenticator`; handlers only ever see a Principal."""

from __future__ import annotations

import abc
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import Request

from pingtower.common.http.problems import Problem

ROLES = ("viewer", "editor", "admin")
_RANK = {role: rank for rank, role in enumerate(ROLES)}


@dataclass(frozen=True)
class Principal:
    subject: str
    tenant: str
    roles: frozenset[str] = field(default_factory=frozenset)

    def has(self, role: str) -> bool:
        """Roles are ordered: admin implies editor implies viewer."""
        need = _RANK[role]
        return any(_RANK.get(r, -1) >= need for r in self.roles)


class Authenticator(abc.ABC):
    @abc.abstractmethod
    async def authenticate(self, request: Request) -> Principal | None:
        """The caller, or None when the request carries no valid credentials."""


class SingleWorkspaceAuthenticator(Authenticator):
    """Every caller is an admin of one workspace. Only for the embedded mode on a trusted
    loopback address until the built-in login exists; never in the distributed mode."""

    def __init__(self, tenant: str = "default") -> None:
        self.principal = Principal("local-admin", tenant, frozenset({"admin"}))

    async def authenticate(self, request: Request) -> Principal | None:
        return self.principal


class TokenAuthenticator(Authenticator):
    """Bearer tokens known in advance (the bootstrap admin token), compared in constant time."""

    def __init__(self, tokens: dict[str, Principal]) -> None:
        self._tokens = {_digest(token): principal for token, principal in tokens.items()}

    async def authenticate(self, request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        wanted = _digest(token.strip())
        for digest, principal in self._tokens.items():
            if hmac.compare_digest(digest, wanted):
                return principal
        return None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def require(role: str) -> Callable[[Request], Awaitable[Principal]]:
    if role not in _RANK:
        raise ValueError(f"unknown role {role}")

    async def dependency(request: Request) -> Principal:
        authenticator: Authenticator | None = getattr(request.app.state, "authenticator", None)
        if authenticator is None:
            raise Problem(401, "Unauthorized", "no authenticator is configured")
        principal = await authenticator.authenticate(request)
        if principal is None:
            raise Problem(401, "Unauthorized", "missing or invalid credentials")
        if not principal.has(role):
            raise Problem(403, "Forbidden", f"this action needs the {role} role")
        return principal

    return dependency
