"""Which login the dashboard is told to use, and the CSP that lets exactly that login work."""

from __future__ import annotations

import re

import httpx
import pytest
from asgi_lifespan import LifespanManager

from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.runtime import build_app
from pingtower.common.security import TokenAuthenticator
from pingtower.common.settings import Settings
from pingtower.web.component import STATIC
from pingtower.web.domain.login import LoginConfig, OidcLogin, origin, security_headers
from pingtower.web.service import build

ISSUER = "http://127.0.0.1:58080/realms/pingtower"


def connect_src(headers: httpx.Headers) -> list[str]:
    match = re.search(r"connect-src ([^;]+);", headers["content-security-policy"])
    assert match, headers["content-security-policy"]
    return match.group(1).split()


def test_without_an_issuer_the_builtin_login_is_used_and_nothing_else_may_be_fetched() -> None:
    config = LoginConfig.from_settings(
        issuer=None, browser_issuer=None, client_id="pingtower-web", scopes="openid"
    )
    assert config.kind == "builtin"
    assert config.public() == {"login": "builtin", "oidc": None}
    assert config.connect_sources() == ()


def test_with_an_issuer_the_browser_is_sent_to_it_and_may_fetch_from_its_origin_only() -> None:
    config = LoginConfig.from_settings(
        issuer=ISSUER, browser_issuer=None, client_id="pingtower-web", scopes="profile email"
    )
    assert config.oidc == OidcLogin(ISSUER, "pingtower-web", "openid profile email")
    assert config.public()["login"] == "oidc"
    assert config.connect_sources() == ("http://127.0.0.1:58080",)


def test_the_browsers_issuer_wins_when_it_differs_from_the_services_one() -> None:
    config = LoginConfig.from_settings(
        issuer="http://keycloak:8080/realms/pingtower",
        browser_issuer="https://login.example.com/realms/pingtower/",
        client_id="web",
        scopes="openid",
    )
    assert config.oidc is not None
    assert config.oidc.issuer == "https://login.example.com/realms/pingtower"
    assert config.connect_sources() == ("https://login.example.com",)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://id.example.com/realms/x", "https://id.example.com"),
        ("https://id.example.com:443/realms/x", "https://id.example.com"),
        ("http://id.example.com:80/", "http://id.example.com"),
        ("http://id.example.com:8443/realms/x", "http://id.example.com:8443"),
        ("http://[::1]:8080/realms/x", "http://[::1]:8080"),
    ],
)
def test_origin_is_what_a_csp_source_names(url: str, expected: str) -> None:
    assert origin(url) == expected


@pytest.mark.parametrize("url", ["ftp://id.example.com/", "/realms/x", "https://"])
def test_origin_refuses_anything_but_absolute_http_urls(url: str) -> None:
    with pytest.raises(ValueError, match="absolute"):
        origin(url)


def test_the_csp_never_gets_a_wildcard() -> None:
    policy = security_headers(("https://id.example.com",))["Content-Security-Policy"]
    assert "connect-src 'self' https://id.example.com;" in policy
    assert "*" not in policy


@pytest.mark.parametrize(
    ("settings", "login", "sources"),
    [
        (Settings(), "builtin", ["'self'"]),
        (Settings(oidc_issuer=ISSUER), "oidc", ["'self'", "http://127.0.0.1:58080"]),
    ],
)
async def test_the_web_role_serves_its_config_publicly_and_the_matching_csp(
    settings: Settings, login: str, sources: list[str]
) -> None:
    bus = InProcessBus()
    app = build_app("web", build(settings, bus, ["web"]), bus, TokenAuthenticator({}))
    async with (
        LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://web"
        ) as client,
    ):
        config = await client.get("/api/v1/web/config")  # no credentials at all
        assert config.status_code == 200
        assert config.headers["cache-control"] == "no-cache"
        assert config.json()["login"] == login
        if login == "oidc":
            assert config.json()["oidc"] == {
                "issuer": ISSUER,
                "client_id": "pingtower-web",
                "scopes": "openid profile",
                "api_client": "pingtower-api",
                "workspace_claim": "workspace",
            }
        for path in ("/", "/static/app.js", "/static/auth.js"):
            response = await client.get(path)
            assert response.status_code == 200, path
            assert connect_src(response.headers) == sources, path
        assert "/api/v1/web/config" in (await client.get("/api/v1/openapi.json")).json()["paths"]


def test_auth_js_talks_only_to_the_configured_issuer_and_keeps_tokens_out_of_storage() -> None:
    source = (STATIC / "auth.js").read_text()
    assert not re.search(r"""["'`]https?://""", source), "no address is written into auth.js"
    assert "localStorage" not in source
    # sessionStorage holds only the login under way (verifier, state, nonce), never a token.
    assert re.findall(r"sessionStorage\.setItem\((\w+)", source) == ["FLOW_KEY"]
    assert 'code_challenge_method: "S256"' in source
