"""The realm from deploy/keycloak/ behaves as its README says, on the real Keycloak."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from .keycloak import AUTOMATION_SECRET, Keycloak

CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"  # RFC 7636's example S256 challenge


@pytest.fixture
def keycloak(keycloak_url: str) -> Keycloak:
    return Keycloak.from_url(keycloak_url)


async def authorize(keycloak: Keycloak, **params: str) -> httpx.Response:
    query = {
        "client_id": "pingtower-web",
        "response_type": "code",
        "redirect_uri": "http://localhost:8000/callback",
        "scope": "openid",
        **params,
    }
    async with httpx.AsyncClient(timeout=20) as client:
        return await client.get(f"{keycloak.issuer()}/protocol/openid-connect/auth", params=query)


async def test_web_client_refuses_a_login_without_pkce(keycloak: Keycloak) -> None:
    response = await authorize(keycloak)
    assert response.status_code == 302
    error = parse_qs(urlsplit(response.headers["location"]).query)
    assert error["error"] == ["invalid_request"]
    assert "code_challenge_method" in error["error_description"][0]


async def test_web_client_shows_the_login_page_with_pkce_s256(keycloak: Keycloak) -> None:
    response = await authorize(keycloak, code_challenge=CHALLENGE, code_challenge_method="S256")
    assert response.status_code == 200
    assert "password" in response.text


async def test_web_client_refuses_a_foreign_redirect_uri(keycloak: Keycloak) -> None:
    response = await authorize(
        keycloak,
        redirect_uri="https://evil.example/callback",
        code_challenge=CHALLENGE,
        code_challenge_method="S256",
    )
    assert response.status_code == 400


async def test_web_client_has_no_password_grant(keycloak: Keycloak) -> None:
    async with httpx.AsyncClient(timeout=20) as client:
        response = await client.post(
            f"{keycloak.issuer()}/protocol/openid-connect/token",
            data={
                "grant_type": "password",
                "client_id": "pingtower-web",
                "username": "bob-editor",
                "password": "demo-bob",
            },
        )
    assert response.json()["error"] == "unauthorized_client"


async def test_cli_client_offers_the_device_flow(keycloak: Keycloak) -> None:
    async with httpx.AsyncClient(timeout=20) as client:
        response = await client.post(
            f"{keycloak.issuer()}/protocol/openid-connect/auth/device",
            data={"client_id": "pingtower-cli"},
        )
    assert response.status_code == 200
    assert {"device_code", "user_code", "verification_uri"} <= response.json().keys()


async def test_automation_client_refuses_a_wrong_secret(keycloak: Keycloak) -> None:
    async with httpx.AsyncClient(timeout=20) as client:
        response = await client.post(
            f"{keycloak.issuer()}/protocol/openid-connect/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "pingtower-automation",
                "client_secret": AUTOMATION_SECRET + "-wrong",
            },
        )
    assert response.status_code == 401
