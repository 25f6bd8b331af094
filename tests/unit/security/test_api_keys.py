"""API keys: minted once, stored as a digest, scoped to a workspace and a role, revocable."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from hypothesis import given
from hypothesis import strategies as st

from pingtower.common.http.app import create_app
from pingtower.common.security import (
    ROLES,
    ApiKey,
    ApiKeyAuthenticator,
    Principal,
    mint_api_key,
    parse_api_key,
    require,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


class KeysInMemory:
    def __init__(self, *keys: ApiKey) -> None:
        self.keys = {key.id: key for key in keys}

    async def get(self, key_id: uuid.UUID) -> ApiKey | None:
        return self.keys.get(key_id)


def app_with(keys: KeysInMemory) -> FastAPI:
    router = APIRouter()

    @router.post("/monitors")
    async def create(principal: Principal = Depends(require("editor"))) -> dict[str, str]:
        return {"workspace": principal.tenant, "subject": principal.subject}

    app = create_app("test", routers=[router])
    app.state.authenticator = ApiKeyAuthenticator(keys)
    return app


async def post(app: FastAPI, token: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        return await c.post("/api/v1/monitors", headers=headers)


@given(st.sampled_from(ROLES), st.text(min_size=1, max_size=30))
def test_minted_key_names_its_own_record(role: str, tenant: str) -> None:
    plaintext, record = mint_api_key(tenant, role, "ci", created_by="alice", now=NOW)
    assert parse_api_key(plaintext) == record.id
    assert record.principal == Principal(f"api-key:{record.id}", tenant, frozenset({role}))


def test_the_stored_record_holds_no_part_of_the_secret() -> None:
    plaintext, record = mint_api_key("acme", "editor", "ci", created_by="alice", now=NOW)
    secret = plaintext.rsplit("_", 1)[-1]
    stored = repr(dataclasses.astuple(record))
    assert secret not in stored
    assert plaintext.encode() not in record.digest


def test_two_keys_never_share_id_or_secret() -> None:
    minted = [mint_api_key("acme", "viewer", "k", created_by="a", now=NOW) for _ in range(50)]
    assert len({plaintext for plaintext, _ in minted}) == 50
    assert len({record.id for _, record in minted}) == 50


def test_unknown_role_cannot_be_minted() -> None:
    with pytest.raises(ValueError, match="unknown role"):
        mint_api_key("acme", "owner", "k", created_by="a", now=NOW)


@given(st.text(max_size=120))
def test_text_not_shaped_like_a_key_is_not_parsed(text: str) -> None:
    if not text.startswith("ptk_"):
        assert parse_api_key(text) is None


def test_keycloak_tokens_and_admin_tokens_are_not_api_keys() -> None:
    assert parse_api_key("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln") is None
    assert parse_api_key("ptk_not-a-uuid_" + "a" * 43) is None


async def test_editor_key_creates_in_its_workspace() -> None:
    plaintext, record = mint_api_key("globex", "editor", "ci", created_by="dave", now=NOW)
    response = await post(app_with(KeysInMemory(record)), plaintext)
    assert response.status_code == 200
    assert response.json() == {"workspace": "globex", "subject": f"api-key:{record.id}"}


async def test_viewer_key_may_not_create() -> None:
    plaintext, record = mint_api_key("acme", "viewer", "dashboards", created_by="a", now=NOW)
    assert (await post(app_with(KeysInMemory(record)), plaintext)).status_code == 403


async def test_revoked_key_is_refused() -> None:
    plaintext, record = mint_api_key("acme", "admin", "old", created_by="a", now=NOW)
    revoked = dataclasses.replace(record, revoked_at=NOW)
    assert (await post(app_with(KeysInMemory(revoked)), plaintext)).status_code == 401


async def test_right_id_with_a_wrong_secret_is_refused() -> None:
    plaintext, record = mint_api_key("acme", "admin", "k", created_by="a", now=NOW)
    guessed = plaintext[: -len("x")] + ("y" if plaintext.endswith("x") else "x")
    assert (await post(app_with(KeysInMemory(record)), guessed)).status_code == 401


async def test_key_unknown_to_the_store_is_refused() -> None:
    plaintext, _ = mint_api_key("acme", "admin", "k", created_by="a", now=NOW)
    assert (await post(app_with(KeysInMemory()), plaintext)).status_code == 401
