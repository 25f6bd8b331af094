"""The dashboard of the distributed mode logs in through Keycloak, in a real browser: the
authorization code flow with PKCE on Keycloak's own login page, the overview of the user's
workspace, a viewer refused a change, the access token refreshed before it expires, and logout
ending the Keycloak session. Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from tests.e2e.harness import wait_for
from tests.e2e.web.browser import CHROMIUM_ARGS, SCREENSHOTS, chromium_path
from tests.e2e.web.distributed import distributed_web, password_token
from tests.integration.security.keycloak import DEMO_PASSWORDS, Keycloak

pytestmark = pytest.mark.e2e

SEEN = 30_000  # ms; generous for a loaded machine, each wait ends as soon as the page shows it
# Short enough that the page must refresh during the test, long enough for a loaded machine to
# get from Keycloak's answer to the first API call well within it.
ACCESS_TOKEN_SECONDS = 20


async def test_the_dashboard_logs_in_through_keycloak_refreshes_and_logs_out(
    tmp_path: Path,
    make_pg_database: Callable[[], Awaitable[str]],
    rabbitmq_url: str,
    keycloak_url: str,
    namespace: str,
) -> None:
    executable = chromium_path()
    from playwright.async_api import Request, async_playwright, expect

    expect.set_options(timeout=SEEN)
    keycloak = Keycloak.from_url(keycloak_url)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    async with distributed_web(
        tmp_path,
        make_pg_database,
        rabbitmq_url,
        keycloak,
        namespace,
        access_token_seconds=ACCESS_TOKEN_SECONDS,
    ) as gateway:
        base = gateway.base

        async def as_alice() -> dict[str, str]:
            token = await password_token(keycloak, gateway.issuer, "alice-admin")
            return {"Authorization": f"Bearer {token}"}

        # A monitor in acme (created through the API), so the overview has something to show.
        async with httpx.AsyncClient(base_url=base, headers=await as_alice(), timeout=10) as api:
            created = await api.post(
                "/api/v1/monitors",
                json={"name": "Checkout", "type": "http", "target": "http://127.0.0.1:9/"},
            )
            assert created.status_code == 201, created.text

            async def listed() -> bool:
                overview = (await api.get("/api/v1/stats/overview")).json()
                return any(item["name"] == "Checkout" for item in overview["items"])

            await wait_for(listed, timeout=30, what="statistics to list the monitor")

        issuer_origin = keycloak.base
        keycloak_login = f"{gateway.issuer}/protocol/openid-connect/auth?"
        foreign: list[str] = []
        csp_violations: list[str] = []
        token_calls: list[tuple[str, int, dict[str, Any]]] = []  # grant, status, answer
        api_calls: list[tuple[str, str, int]] = []  # method path, Authorization, status

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=executable, args=CHROMIUM_ARGS
            )
            context = await browser.new_context(viewport={"width": 1280, "height": 860})
            page = await context.new_page()
            page.set_default_timeout(SEEN)
            page.on(
                "request",
                lambda request: (
                    None
                    if request.url.startswith((base, issuer_origin))
                    else foreign.append(request.url)
                ),
            )
            page.on(
                "console",
                lambda message: (
                    csp_violations.append(message.text)
                    if "Content Security Policy" in message.text
                    else None
                ),
            )

            async def record(request: Request) -> None:
                response = await request.response()
                if response is None:
                    return
                if request.url.startswith(issuer_origin) and request.url.endswith("/token"):
                    grant = parse_qs(request.post_data or "").get("grant_type", [""])[0]
                    token_calls.append((grant, response.status, await response.json()))
                elif request.url.startswith(f"{base}/api/v1/") and "/web/config" not in request.url:
                    path = request.url.removeprefix(base)
                    auth = await request.header_value("authorization") or ""
                    api_calls.append((f"{request.method} {path}", auth, response.status))

            page.on("requestfinished", record)

            async def shot(name: str) -> None:
                await page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)

            async def log_in(username: str) -> None:
                await page.get_by_role("button", name="Log in with Keycloak").click()
                await expect(page).to_have_url(re.compile(re.escape(keycloak_login)))
                await page.locator("#username").fill(username)
                await page.locator("#password").fill(DEMO_PASSWORDS[username])
                await shot(f"keycloak-01-login-page-{username}")
                await page.locator("#kc-login").click()
                await expect(page.get_by_role("heading", name="Overview")).to_be_visible()

            async def log_out() -> None:
                await page.locator("#logout").click()
                await expect(
                    page.get_by_role("button", name="Log in with Keycloak")
                ).to_be_visible()
                assert page.url.startswith(base), page.url

            async def no_token_stored() -> None:
                stored = await page.evaluate(
                    "JSON.stringify({...sessionStorage}) + JSON.stringify({...localStorage})"
                )
                assert "eyJ" not in stored, f"a token was written to storage: {stored}"

            # Logged out, the dashboard offers Keycloak's login, not its own password form.
            await page.goto(f"{base}/")
            await expect(page).to_have_url(f"{base}/#/login")
            await expect(page.get_by_label("Password")).to_have_count(0)
            await shot("keycloak-00-dashboard-login")

            # An answer that this browser's login did not ask for (forged state) is refused
            # before any code is exchanged.
            await page.goto(f"{base}/?code=forged&state=forged")
            await expect(page.get_by_role("alert")).to_contain_text("state")
            await expect(page).to_have_url(f"{base}/#/login")
            assert not token_calls

            # Alice (admin of acme) logs in on Keycloak's page and sees acme's overview.
            await log_in("alice-admin")
            await expect(page.locator("tr[data-monitor]", has_text="Checkout")).to_be_visible()
            await expect(page.locator("#live")).to_have_text("Live")
            assert page.url == f"{base}/#/overview", "the code and state left the address bar"
            # The name comes from the ID token, the workspace and role from the access token.
            await expect(page.locator("#who")).to_have_text("alice-admin · acme")
            await expect(page.get_by_role("link", name="Settings")).to_be_visible()
            await no_token_stored()
            await shot("keycloak-02-overview-admin")

            def answers(grant: str) -> list[dict[str, Any]]:
                return [a for g, status, a in token_calls if g == grant and status == 200]

            def called(prefix: str, tokens: list[dict[str, Any]], status: int = 200) -> bool:
                bearers = {f"Bearer {answer['access_token']}" for answer in tokens}
                return any(
                    call.startswith(prefix) and auth in bearers and code == status
                    for call, auth, code in api_calls
                )

            async def code_exchanged() -> bool:
                return bool(answers("authorization_code")) and called(
                    "GET /api/v1/stats/overview", answers("authorization_code")
                )

            await wait_for(code_exchanged, timeout=10, what="the overview called with the token")
            [first] = answers("authorization_code")
            assert first["expires_in"] <= ACCESS_TOKEN_SECONDS
            assert {auth for _, auth, _ in api_calls} <= {
                f"Bearer {a['access_token']}" for _, _, a in token_calls if "access_token" in a
            }, "every API call carries a token the page got from Keycloak"

            # Before the access token expires the page refreshes it on its own; calls made
            # afterwards carry the new token and are let in.
            async def refreshed() -> bool:
                assert all(status == 200 for _, status, _ in token_calls), token_calls
                return bool(answers("refresh_token"))

            await wait_for(
                refreshed, timeout=ACCESS_TOKEN_SECONDS + 20, what="the page to refresh its token"
            )
            assert answers("refresh_token")[0]["access_token"] != first["access_token"]
            await page.evaluate("location.hash = '#/monitors/new'")
            await expect(page.get_by_role("heading", name="New monitor")).to_be_visible()
            await page.get_by_role("link", name="Overview").click()
            await expect(page.locator("tr[data-monitor]", has_text="Checkout")).to_be_visible()

            async def used_renewed() -> bool:
                return called("GET /api/v1/stats/overview", answers("refresh_token"))

            await wait_for(used_renewed, timeout=10, what="a call with the refreshed token")

            # Logout ends the Keycloak session: the next login asks for the password again.
            await log_out()
            await shot("keycloak-03-logged-out")
            await page.get_by_role("button", name="Log in with Keycloak").click()
            await expect(page.locator("#username")).to_be_visible()
            await page.goto(f"{base}/")

            # Carol (viewer of acme) sees the overview but no way to change anything; the API
            # refuses her a change made anyway.
            await log_in("carol-viewer")
            await expect(page.locator("tr[data-monitor]", has_text="Checkout")).to_be_visible()
            await expect(page.locator("#who")).to_have_text("carol-viewer · acme")
            await expect(page.get_by_role("link", name="New monitor")).to_be_hidden()
            await expect(page.get_by_role("link", name="Settings")).to_be_hidden()
            await page.locator("tr[data-monitor]", has_text="Checkout").get_by_role("link").click()
            await expect(page.get_by_role("heading", name="Checkout")).to_be_visible()
            for action in ("Pause", "Check now", "Edit", "Delete"):
                await expect(page.get_by_role("button", name=action)).to_have_count(0)
            await page.evaluate("location.hash = '#/monitors/new'")
            await expect(page.get_by_role("main")).to_contain_text("Only an editor or admin")
            await shot("keycloak-04-viewer-refused")
            status = await page.evaluate(
                """async () => {
                    const { post } = await import("/static/api.js");
                    try {
                        await post("/monitors", { name: "Not allowed", type: "http",
                            target: "http://127.0.0.1:9/" });
                        return 201;
                    } catch (error) { return error.status; }
                }"""
            )
            assert status == 403
            assert not [c for c, _, _ in api_calls if c.startswith("GET /api/v1/auth/me")], (
                "with Keycloak the page knows the user from its tokens"
            )

            async def refused() -> bool:
                return any(c == "POST /api/v1/monitors" and s == 403 for c, _, s in api_calls)

            await wait_for(refused, timeout=10, what="the API to refuse the viewer (403)")
            await log_out()

            await context.close()
            await browser.close()

        async with httpx.AsyncClient(base_url=base, headers=await as_alice(), timeout=10) as api:
            names = [m["name"] for m in (await api.get("/api/v1/monitors")).json()["items"]]
        assert names == ["Checkout"], "the viewer's attempt created nothing"
        assert not foreign, f"the dashboard reached beyond its origin and Keycloak: {foreign}"
        assert not csp_violations, csp_violations
