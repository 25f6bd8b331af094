"""require() on a small app: who gets 401, 403 or in, always as problem+json."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, Depends

from pingtower.common.http.app import create_app
from pingtower.common.oidc import (
    AccessTokenVerifier,
    JwksCache,
    KeycloakAuthenticator,
)
from pingtower.common.security import FirstOf, Principal, TokenAuthenticator, require

from .issuer import AUDIENCE, ISSUER, FakeIssuer

BOOTSTRAP = "bootstrap-admin-token-0123456789abcdef"


def build(issuer: FakeIssuer) -> httpx.AsyncClient:
    router = APIRouter()

    @router.get("/monitors")
    async def read(principal: Principal = Depends(require("viewer"))) -> dict[str, str]:
        return {"tenant": principal.tenant, "subject": principal.subject}

    @router.post("/monitors")
    async def write(principal: Principal = Depends(require("editor"))) -> dict[str, str]:
        return {"tenant": principal.tenant}

    app = create_app("test", routers=[router])
    keys = JwksCache(ISSUER, fetch=issuer.fetch)
    bootstrap = TokenAuthenticator({BOOTSTRAP: Principal("admin", "default", frozenset({"admin"}))})
    app.state.authenticator = FirstOf(
        [KeycloakAuthenticator(AccessTokenVerifier(keys, audience=AUDIENCE)), bootstrap]
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test")


@pytest.fixture
def issuer() -> FakeIssuer:
    issuer = FakeIssuer()
    issuer.add_key()
    return issuer


@pytest.fixture
async def client(issuer: FakeIssuer) -> AsyncIterator[httpx.AsyncClient]:
    async with build(issuer) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def assert_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == status


async def test_request_without_credentials_is_401(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/api/v1/monitors"), 401)


async def test_expired_token_is_401(client: httpx.AsyncClient, issuer: FakeIssuer) -> None:
    token = issuer.token(next(iter(issuer.keys)), exp=int(time.time()) - 120)
    assert_problem(await client.get("/api/v1/monitors", headers=bearer(token)), 401)


async def test_token_of_another_issuer_is_401(client: httpx.AsyncClient) -> None:
    stranger = FakeIssuer()
    token = stranger.token(stranger.add_key())
    assert_problem(await client.get("/api/v1/monitors", headers=bearer(token)), 401)


async def test_viewer_may_read_but_not_write(client: httpx.AsyncClient, issuer: FakeIssuer) -> None:
    kid = next(iter(issuer.keys))
    token = issuer.token(kid, sub="carol", realm_access={"roles": ["viewer"]})
    read = await client.get("/api/v1/monitors", headers=bearer(token))
    assert read.status_code == 200
    assert read.json() == {"tenant": "acme", "subject": "carol"}
    assert_problem(await client.post("/api/v1/monitors", headers=bearer(token)), 403)


async def test_editor_may_write_in_their_workspace(
    client: httpx.AsyncClient, issuer: FakeIssuer
) -> None:
    token = issuer.token(next(iter(issuer.keys)), workspace="globex")
    response = await client.post("/api/v1/monitors", headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == {"tenant": "globex"}


async def test_genuine_token_without_workspace_is_403(
    client: httpx.AsyncClient, issuer: FakeIssuer
) -> None:
    token = issuer.token(next(iter(issuer.keys)), workspace=None)
    response = await client.get("/api/v1/monitors", headers=bearer(token))
    assert_problem(response, 403)
    assert "workspace" in response.json()["detail"]


async def test_genuine_token_without_pingtower_role_is_403(
    client: httpx.AsyncClient, issuer: FakeIssuer
) -> None:
    token = issuer.token(next(iter(issuer.keys)), realm_access={"roles": ["offline_access"]})
    assert_problem(await client.get("/api/v1/monitors", headers=bearer(token)), 403)


async def test_bootstrap_admin_token_still_works_beside_keycloak(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/api/v1/monitors", headers=bearer(BOOTSTRAP))
    assert response.status_code == 200
    assert response.json() == {"tenant": "default"}


async def test_unreachable_identity_provider_without_cached_keys_is_503(
    client: httpx.AsyncClient, issuer: FakeIssuer
) -> None:
    issuer.down = True
    token = issuer.token(next(iter(issuer.keys)))
    assert_problem(await client.get("/api/v1/monitors", headers=bearer(token)), 503)
