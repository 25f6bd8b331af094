"""API keys in a real database (SQLite and PostgreSQL), and through an app."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import APIRouter, Depends
from sqlalchemy import MetaData

from pingtower.common.db import create_engine, session_factory
from pingtower.common.http.app import create_app
from pingtower.common.security import (
    ApiKeyAuthenticator,
    FirstOf,
    Principal,
    SqlApiKeys,
    TokenAuthenticator,
    api_keys_router,
    api_keys_table,
    mint_api_key,
    require,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    # Synchronous on purpose: only outside the event loop can it ask for the PostgreSQL fixture.
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def keys(database_url: str) -> AsyncIterator[SqlApiKeys]:
    metadata = MetaData()
    table = api_keys_table(metadata)
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        yield SqlApiKeys(session_factory(engine), table)
    finally:
        await engine.dispose()


async def test_stored_key_reads_back_as_minted(keys: SqlApiKeys) -> None:
    _, record = mint_api_key("acme", "editor", "ci", created_by="alice", now=NOW)
    async with keys.sessions() as session, session.begin():
        await keys.add(session, record)
    assert await keys.get(record.id) == record
    assert await keys.get(uuid.uuid4()) is None


async def test_keys_are_listed_per_workspace(keys: SqlApiKeys) -> None:
    minted = [
        mint_api_key(tenant, "viewer", f"k{i}", created_by="a", now=NOW + timedelta(seconds=i))[1]
        for i, tenant in enumerate(["acme", "globex", "acme"])
    ]
    async with keys.sessions() as session, session.begin():
        for record in minted:
            await keys.add(session, record)
    async with keys.sessions() as session:
        acme = await keys.of_tenant(session, "acme")
    assert acme == [minted[0], minted[2]]


async def test_revocation_is_scoped_to_the_workspace_and_kept(keys: SqlApiKeys) -> None:
    _, record = mint_api_key("acme", "admin", "k", created_by="a", now=NOW)
    async with keys.sessions() as session, session.begin():
        await keys.add(session, record)
    later = NOW + timedelta(hours=1)
    async with keys.sessions() as session, session.begin():
        assert not await keys.revoke(session, "globex", record.id, later)
    untouched = await keys.get(record.id)
    assert untouched is not None
    assert untouched.revoked_at is None
    async with keys.sessions() as session, session.begin():
        assert await keys.revoke(session, "acme", record.id, later)
        assert await keys.revoke(session, "acme", record.id, later + timedelta(hours=1))
    revoked = await keys.get(record.id)
    assert revoked is not None
    assert revoked.revoked_at == later


async def test_key_works_until_revoked(keys: SqlApiKeys) -> None:
    router = APIRouter()

    @router.get("/whoami")
    async def whoami(principal: Principal = Depends(require("viewer"))) -> dict[str, str]:
        return {"workspace": principal.tenant}

    app = create_app("test", routers=[router])
    app.state.authenticator = ApiKeyAuthenticator(keys)
    plaintext, record = mint_api_key("acme", "viewer", "k", created_by="a", now=NOW)
    async with keys.sessions() as session, session.begin():
        await keys.add(session, record)
    headers = {"authorization": f"Bearer {plaintext}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        assert (await c.get("/api/v1/whoami", headers=headers)).json() == {"workspace": "acme"}
        async with keys.sessions() as session, session.begin():
            await keys.revoke(session, "acme", record.id, NOW)
        assert (await c.get("/api/v1/whoami", headers=headers)).status_code == 401


ADMIN_ACME, ADMIN_GLOBEX, VIEWER_ACME = "admin-acme-token", "admin-globex-token", "viewer-acme"


@pytest.fixture
async def api(keys: SqlApiKeys) -> AsyncIterator[httpx.AsyncClient]:
    router = APIRouter()

    @router.post("/monitors")
    async def create(principal: Principal = Depends(require("editor"))) -> dict[str, str]:
        return {"workspace": principal.tenant, "subject": principal.subject}

    app = create_app("test", routers=[router, api_keys_router(keys)])
    people = TokenAuthenticator(
        {
            ADMIN_ACME: Principal("alice", "acme", frozenset({"admin"})),
            ADMIN_GLOBEX: Principal("dave", "globex", frozenset({"admin"})),
            VIEWER_ACME: Principal("carol", "acme", frozenset({"viewer"})),
        }
    )
    app.state.authenticator = FirstOf([ApiKeyAuthenticator(keys), people])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        yield c


def as_(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_admin_creates_a_key_that_is_shown_once_and_works(api: httpx.AsyncClient) -> None:
    created = await api.post(
        "/api/v1/api-keys", json={"name": "ci", "role": "editor"}, headers=as_(ADMIN_ACME)
    )
    assert created.status_code == 201
    body = created.json()
    assert body["created_by"] == "alice"
    used = await api.post("/api/v1/monitors", headers=as_(body["key"]))
    assert used.json() == {"workspace": "acme", "subject": f"api-key:{body['id']}"}
    listed = (await api.get("/api/v1/api-keys", headers=as_(ADMIN_ACME))).json()
    assert [item["id"] for item in listed["items"]] == [body["id"]]
    assert body["key"] not in str(listed)
    assert "key" not in listed["items"][0]


async def test_only_admins_manage_keys(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/api/v1/api-keys", json={"name": "x", "role": "viewer"}, headers=as_(VIEWER_ACME)
    )
    assert response.status_code == 403
    assert (await api.get("/api/v1/api-keys", headers=as_(VIEWER_ACME))).status_code == 403
    assert (await api.get("/api/v1/api-keys")).status_code == 401


async def test_workspace_and_owner_cannot_be_chosen_by_the_caller(api: httpx.AsyncClient) -> None:
    for extra in ({"tenant": "globex"}, {"created_by": "mallory"}, {"id": str(uuid.uuid4())}):
        response = await api.post(
            "/api/v1/api-keys",
            json={"name": "x", "role": "viewer", **extra},
            headers=as_(ADMIN_ACME),
        )
        assert response.status_code == 422


async def test_another_workspace_neither_sees_nor_revokes_a_key(api: httpx.AsyncClient) -> None:
    created = await api.post(
        "/api/v1/api-keys", json={"name": "ci", "role": "admin"}, headers=as_(ADMIN_ACME)
    )
    key = created.json()
    assert (await api.get("/api/v1/api-keys", headers=as_(ADMIN_GLOBEX))).json()["items"] == []
    foreign = await api.delete(f"/api/v1/api-keys/{key['id']}", headers=as_(ADMIN_GLOBEX))
    assert foreign.status_code == 404
    assert (await api.post("/api/v1/monitors", headers=as_(key["key"]))).status_code == 200
    own = await api.delete(f"/api/v1/api-keys/{key['id']}", headers=as_(ADMIN_ACME))
    assert own.status_code == 204
    assert (await api.post("/api/v1/monitors", headers=as_(key["key"]))).status_code == 401


async def test_keys_are_listed_page_by_page(api: httpx.AsyncClient) -> None:
    made = []
    for i in range(5):
        response = await api.post(
            "/api/v1/api-keys", json={"name": f"k{i}", "role": "viewer"}, headers=as_(ADMIN_ACME)
        )
        made.append(response.json()["id"])
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/api/v1/api-keys", params=params, headers=as_(ADMIN_ACME))).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(made)
    assert len(seen) == 5
    bad = await api.get("/api/v1/api-keys", params={"cursor": "garbage"}, headers=as_(ADMIN_ACME))
    assert bad.status_code == 422
