"""A PingTower app (build_app) behind real Keycloak tokens: roles decide, answers are problems."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, Depends

from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.oidc import authenticator_from_settings
from pingtower.common.runtime import Component, build_app
from pingtower.common.security import Principal, TokenAuthenticator, require
from pingtower.common.settings import Settings

from .keycloak import Keycloak

BOOTSTRAP = "bootstrap-admin-token-for-the-keycloak-test"


class MonitorsComponent(Component):
    """A stand-in service: reading needs viewer, changing needs editor."""

    name = "monitors"

    def __init__(self) -> None:
        router = APIRouter()

        @router.get("/monitors")
        async def read(principal: Principal = Depends(require("viewer"))) -> dict[str, str]:
            return {"workspace": principal.tenant, "subject": principal.subject}

        @router.post("/monitors")
        async def create(principal: Principal = Depends(require("editor"))) -> dict[str, str]:
            return {"workspace": principal.tenant}

        self._router = router

    @property
    def routers(self) -> Sequence[APIRouter]:
        return (self._router,)


@pytest.fixture
async def keycloak(keycloak_url: str) -> Keycloak:
    return Keycloak.from_url(keycloak_url)


@pytest.fixture
async def client(keycloak: Keycloak) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(oidc_issuer=keycloak.issuer())
    bootstrap = TokenAuthenticator({BOOTSTRAP: Principal("admin", "default", frozenset({"admin"}))})
    bus = InProcessBus()
    app = build_app(
        "PingTower test",
        [MonitorsComponent()],
        bus,
        authenticator_from_settings(settings, bootstrap),
    )
    async with (
        LifespanManager(app, startup_timeout=30, shutdown_timeout=30),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client,
    ):
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def assert_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == status


async def test_no_token_is_401(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post("/api/v1/monitors"), 401)


async def test_viewer_token_may_read_but_not_create(
    client: httpx.AsyncClient, keycloak: Keycloak
) -> None:
    token = await keycloak.user_token("carol-viewer")
    read = await client.get("/api/v1/monitors", headers=bearer(token))
    assert read.status_code == 200
    assert read.json()["workspace"] == "acme"
    assert_problem(await client.post("/api/v1/monitors", headers=bearer(token)), 403)


async def test_editor_token_may_create(client: httpx.AsyncClient, keycloak: Keycloak) -> None:
    token = await keycloak.user_token("bob-editor")
    response = await client.post("/api/v1/monitors", headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == {"workspace": "acme"}


async def test_automation_token_creates_in_acme(
    client: httpx.AsyncClient, keycloak: Keycloak
) -> None:
    response = await client.post(
        "/api/v1/monitors", headers=bearer(await keycloak.automation_token())
    )
    assert response.status_code == 200
    assert response.json() == {"workspace": "acme"}


async def test_admin_of_globex_acts_in_globex(
    client: httpx.AsyncClient, keycloak: Keycloak
) -> None:
    response = await client.post(
        "/api/v1/monitors", headers=bearer(await keycloak.user_token("dave-admin"))
    )
    assert response.json() == {"workspace": "globex"}


async def test_user_without_workspace_is_403(client: httpx.AsyncClient, keycloak: Keycloak) -> None:
    token = await keycloak.user_token("erin-noworkspace")
    assert_problem(await client.get("/api/v1/monitors", headers=bearer(token)), 403)


async def test_token_from_another_realm_is_401(
    client: httpx.AsyncClient, keycloak: Keycloak
) -> None:
    token = await keycloak.master_admin_token()
    assert_problem(await client.get("/api/v1/monitors", headers=bearer(token)), 401)


async def test_bootstrap_admin_token_works_beside_keycloak(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/monitors", headers=bearer(BOOTSTRAP))
    assert response.json() == {"workspace": "default"}
