"""Roles are ordered (admin > editor > viewer) and every API dependency answers 401 without a
principal and 403 without the role, as problem+json."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, Depends, Request

from pingtower.common.http.app import create_app
from pingtower.common.http.problems import PROBLEM
from pingtower.common.security import (
    Authenticator,
    Principal,
    SingleWorkspaceAuthenticator,
    require,
)


@pytest.mark.parametrize(
    ("roles", "needed", "allowed"),
    [
        ({"viewer"}, "viewer", True),
        ({"viewer"}, "editor", False),
        ({"editor"}, "viewer", True),
        ({"editor"}, "admin", False),
        ({"admin"}, "editor", True),
        ({"admin"}, "viewer", True),
        (set(), "viewer", False),
        ({"superuser"}, "viewer", False),
        ({"viewer", "admin"}, "admin", True),
    ],
)
def test_roles_imply_the_roles_below_them(roles: set[str], needed: str, allowed: bool) -> None:
    assert Principal("u", "t", frozenset(roles)).has(needed) is allowed


def test_an_unknown_role_cannot_be_required() -> None:
    with pytest.raises(ValueError, match="unknown role"):
        require("owner")


class FixedAuthenticator(Authenticator):
    def __init__(self, principal: Principal | None) -> None:
        self.principal = principal

    async def authenticate(self, request: Request) -> Principal | None:
        return self.principal


def app_with(authenticator: Authenticator | None) -> httpx.AsyncClient:
    router = APIRouter()

    @router.delete("/monitors")
    async def delete_all(principal: Principal = Depends(require("editor"))) -> dict[str, str]:
        return {"tenant": principal.tenant}

    app = create_app("t", routers=[router])
    if authenticator is not None:
        app.state.authenticator = authenticator
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_an_editor_may_call_an_editor_endpoint_in_its_own_workspace() -> None:
    principal = Principal("alice", "acme", frozenset({"editor"}))
    async with app_with(FixedAuthenticator(principal)) as client:
        response = await client.delete("/api/v1/monitors")
    assert response.status_code == 200
    assert response.json() == {"tenant": "acme"}


async def test_a_viewer_is_forbidden_with_a_problem_naming_the_role() -> None:
    principal = Principal("bob", "acme", frozenset({"viewer"}))
    async with app_with(FixedAuthenticator(principal)) as client:
        response = await client.delete("/api/v1/monitors")
    assert response.status_code == 403
    assert response.headers["content-type"].startswith(PROBLEM)
    assert "editor" in response.json()["detail"]


async def test_a_caller_without_credentials_is_unauthorized() -> None:
    async with app_with(FixedAuthenticator(None)) as client:
        response = await client.delete("/api/v1/monitors")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith(PROBLEM)


async def test_an_app_without_an_authenticator_refuses_everyone() -> None:
    async with app_with(None) as client:
        response = await client.delete("/api/v1/monitors")
    assert response.status_code == 401


async def test_the_single_workspace_authenticator_makes_everyone_its_admin() -> None:
    async with app_with(SingleWorkspaceAuthenticator("home")) as client:
        response = await client.delete("/api/v1/monitors")
    assert response.json() == {"tenant": "home"}
