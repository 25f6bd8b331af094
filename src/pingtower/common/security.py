"""Who is calling: the principal (subject, workspace, roles) and the FastAPI dependencies that
require a role. How a principal is obtained (Keycloak token, built-in login, API key) is an
`Authenticator` placed on `app.state.authenticator`; handlers only ever see a Principal.

API keys for automation live here too: minted with a random secret, shown once, stored only as
a SHA-256 digest (the secret has 256 bits of entropy, so a slow password hash adds nothing),
scoped to one workspace and one role, revocable. Keycloak tokens: pingtower.common.oidc."""

from __future__ import annotations

import abc
import base64
import hashlib
import hmac
import json
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Column, Index, LargeBinary, MetaData, String, Table, Uuid, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pingtower.common.db import UtcDateTime
from pingtower.common.events import utcnow
from pingtower.common.http.problems import Problem, not_found

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


class FirstOf(Authenticator):
    """Asks each authenticator in turn; the first that knows the caller wins."""

    def __init__(self, authenticators: Sequence[Authenticator]) -> None:
        self.authenticators = tuple(authenticators)

    async def authenticate(self, request: Request) -> Principal | None:
        for authenticator in self.authenticators:
            principal = await authenticator.authenticate(request)
            if principal is not None:
                return principal
        return None


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


# --- API keys ---------------------------------------------------------------------------------

API_KEY_PREFIX = "ptk"
_API_KEY = re.compile(rf"^{API_KEY_PREFIX}_([0-9a-f]{{32}})_([A-Za-z0-9_-]{{43}})$")


@dataclass(frozen=True)
class ApiKey:
    """What is stored of an API key: never the key itself, only its digest."""

    id: uuid.UUID
    tenant: str
    role: str
    name: str
    digest: bytes
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None

    @property
    def principal(self) -> Principal:
        return Principal(f"api-key:{self.id}", self.tenant, frozenset({self.role}))


def mint_api_key(
    tenant: str, role: str, name: str, *, created_by: str, now: datetime
) -> tuple[str, ApiKey]:
    """A new key: (the plaintext to show once, the record to store). The id is part of the
    plaintext so a lookup is by primary key, then the digest is compared in constant time."""
    if role not in _RANK:
        raise ValueError(f"unknown role {role}")
    key_id = uuid.uuid4()
    plaintext = f"{API_KEY_PREFIX}_{key_id.hex}_{secrets.token_urlsafe(32)}"
    record = ApiKey(key_id, tenant, role, name, _digest(plaintext), now, created_by)
    return plaintext, record


def parse_api_key(token: str) -> uuid.UUID | None:
    """The key id of something shaped like an API key, else None."""
    match = _API_KEY.match(token)
    return uuid.UUID(match.group(1)) if match else None


class ApiKeyLookup(Protocol):
    async def get(self, key_id: uuid.UUID) -> ApiKey | None: ...


class ApiKeyAuthenticator(Authenticator):
    """Callers presenting `Authorization: Bearer ptk_...`; revoked or unknown keys get None."""

    def __init__(self, keys: ApiKeyLookup) -> None:
        self.keys = keys

    async def authenticate(self, request: Request) -> Principal | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer":
            return None
        key_id = parse_api_key(token)
        if key_id is None:
            return None
        key = await self.keys.get(key_id)
        if key is None or key.revoked_at is not None:
            return None
        if not hmac.compare_digest(key.digest, _digest(token)):
            return None
        return key.principal


def api_keys_table(metadata: MetaData) -> Table:
    return Table(
        "api_keys",
        metadata,
        Column("id", Uuid, primary_key=True),
        Column("tenant", String(100), nullable=False),
        Column("role", String(20), nullable=False),
        Column("name", String(200), nullable=False),
        Column("digest", LargeBinary(32), nullable=False),
        Column("created_at", UtcDateTime, nullable=False),
        Column("created_by", String(200), nullable=False),
        Column("revoked_at", UtcDateTime, nullable=True),
        Index("ix_api_keys_tenant", "tenant"),
    )


class SqlApiKeys:
    """API keys in a service's database (the table from `api_keys_table`)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], table: Table) -> None:
        self.sessions = sessions
        self.table = table

    async def add(self, session: AsyncSession, key: ApiKey) -> None:
        await session.execute(
            self.table.insert().values(
                id=key.id,
                tenant=key.tenant,
                role=key.role,
                name=key.name,
                digest=key.digest,
                created_at=key.created_at,
                created_by=key.created_by,
                revoked_at=key.revoked_at,
            )
        )

    async def get(self, key_id: uuid.UUID) -> ApiKey | None:
        async with self.sessions() as session:
            row = (
                await session.execute(select(self.table).where(self.table.c.id == key_id))
            ).one_or_none()
        return None if row is None else _api_key(row._mapping)

    async def of_tenant(
        self,
        session: AsyncSession,
        tenant: str,
        *,
        after: tuple[datetime, uuid.UUID] | None = None,
        limit: int | None = None,
    ) -> Sequence[ApiKey]:
        """The workspace's keys, oldest first; `after` (created_at, id) continues a listing."""
        table = self.table
        query = select(table).where(table.c.tenant == tenant)
        if after is not None:
            created_at, key_id = after
            query = query.where(
                (table.c.created_at > created_at)
                | ((table.c.created_at == created_at) & (table.c.id > key_id))
            )
        query = query.order_by(table.c.created_at, table.c.id).limit(limit)
        return [_api_key(row._mapping) for row in await session.execute(query)]

    async def revoke(
        self, session: AsyncSession, tenant: str, key_id: uuid.UUID, now: datetime
    ) -> bool:
        """Revoke a key of the workspace; False when the workspace has no such key. Revoking
        twice keeps the first revocation time."""
        table = self.table
        await session.execute(
            update(table)
            .where(table.c.id == key_id, table.c.tenant == tenant, table.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        found = await session.execute(
            select(table.c.id).where(table.c.id == key_id, table.c.tenant == tenant)
        )
        return found.one_or_none() is not None


def _api_key(row: RowMapping) -> ApiKey:
    return ApiKey(
        id=row["id"],
        tenant=row["tenant"],
        role=row["role"],
        name=row["name"],
        digest=bytes(row["digest"]),
        created_at=row["created_at"],
        created_by=row["created_by"],
        revoked_at=row["revoked_at"],
    )


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="What the key is for.")
    role: Literal["viewer", "editor", "admin"] = Field(description="What the key may do.")


class ApiKeyPublic(BaseModel):
    id: uuid.UUID
    name: str
    role: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyPublic:
        return cls(
            id=key.id,
            name=key.name,
            role=key.role,
            created_at=key.created_at,
            created_by=key.created_by,
            revoked_at=key.revoked_at,
        )


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The key itself. Shown this once: only its digest is kept.")


class ApiKeyPage(BaseModel):
    items: list[ApiKeyPublic]
    next_cursor: str | None


def _encode_cursor(key: ApiKey) -> str:
    raw = json.dumps([key.created_at.isoformat(), str(key.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, key_id = json.loads(raw)
        moment = datetime.fromisoformat(created_at)
        if moment.tzinfo is None:
            raise ValueError("naive time")
        return moment, uuid.UUID(key_id)
    except (ValueError, TypeError) as exc:
        raise Problem(422, "Validation failed", "cursor: not a cursor of this listing") from exc


def api_keys_router(keys: SqlApiKeys, *, clock: Callable[[], datetime] = utcnow) -> APIRouter:
    """Admin endpoints of a workspace's API keys: create (the key is shown once), list, revoke.
    A service mounts it and keeps `api_keys_table` in its database."""
    router = APIRouter(prefix="/api-keys", tags=["api-keys"])

    @router.post("", status_code=201, response_model=ApiKeyCreated)
    async def create_api_key(
        body: ApiKeyCreate, principal: Principal = Depends(require("admin"))
    ) -> ApiKeyCreated:
        plaintext, key = mint_api_key(
            principal.tenant, body.role, body.name, created_by=principal.subject, now=clock()
        )
        async with keys.sessions() as session, session.begin():
            await keys.add(session, key)
        return ApiKeyCreated(**ApiKeyPublic.of(key).model_dump(), key=plaintext)

    @router.get("", response_model=ApiKeyPage)
    async def list_api_keys(
        principal: Principal = Depends(require("admin")),
        limit: int = Query(50, ge=1, le=200),
        cursor: str | None = Query(None, max_length=200, description="next_cursor of a page"),
    ) -> ApiKeyPage:
        after = _decode_cursor(cursor) if cursor else None
        async with keys.sessions() as session:
            found = await keys.of_tenant(session, principal.tenant, after=after, limit=limit + 1)
        page = list(found[:limit])
        next_cursor = _encode_cursor(page[-1]) if len(found) > limit else None
        return ApiKeyPage(items=[ApiKeyPublic.of(key) for key in page], next_cursor=next_cursor)

    @router.delete("/{key_id}", status_code=204)
    async def revoke_api_key(
        key_id: uuid.UUID, principal: Principal = Depends(require("admin"))
    ) -> Response:
        async with keys.sessions() as session, session.begin():
            revoked = await keys.revoke(session, principal.tenant, key_id, clock())
        if not revoked:
            raise not_found("api key")
        return Response(status_code=204)

    return router
