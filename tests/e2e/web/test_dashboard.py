"""The dashboard in a real browser against a real embedded PingTower and a local target: log in
with the admin token, create an HTTP monitor, watch it go UP, DOWN (without reloading) and UP
again, create a webhook channel and send a test, and open the public status page logged out.
Screenshots of each page go to artifacts/screenshots/."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import (
    Process,
    Target,
    WebhookReceiver,
    free_port,
    pingtower,
    wait_for,
    wait_ready,
)
from tests.e2e.web.browser import CHROMIUM_ARGS, SCREENSHOTS, chromium_path

pytestmark = pytest.mark.e2e

# Generous for a loaded machine; each wait ends as soon as the page shows the state.
SEEN = 30_000
ADMIN_PASSWORD = "correct horse battery staple"


@pytest.fixture
async def peers() -> AsyncIterator[tuple[Target, WebhookReceiver]]:
    target, receiver = Target(), WebhookReceiver()
    await target.start()
    await receiver.start()
    yield target, receiver
    await target.stop()
    await receiver.stop()


async def test_dashboard_follows_a_monitor_down_and_up_live_and_sends_a_test_message(
    tmp_path: Path, peers: tuple[Target, WebhookReceiver]
) -> None:
    executable = chromium_path()
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=SEEN)

    target, receiver = peers
    port = free_port()
    data_dir = tmp_path / "data"
    process = Process(
        "pingtower-web",
        pingtower("up", "--port", str(port), "--data-dir", str(data_dir)),
        {
            "PINGTOWER_DATA_DIR": str(data_dir),
            "PINGTOWER_ALLOW_PRIVATE_TARGETS": "true",
            "PINGTOWER_MIN_INTERVAL_SECONDS": "1",
            "PINGTOWER_DELIVERY_BACKOFF_SECONDS": "0.2",
            "PINGTOWER_ADMIN_PASSWORD": ADMIN_PASSWORD,
        },
        tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    foreign: list[str] = []
    try:
        await wait_ready(base, process)
        token = (data_dir / "admin-token").read_text().strip()
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
                    None if request.url.startswith(base) else foreign.append(request.url)
                ),
            )

            async def shot(name: str) -> None:
                await page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)

            # Log in by pasting the admin token.
            await page.goto(f"{base}/")
            await expect(page).to_have_url(f"{base}/#/login")
            await shot("01-login")
            await page.get_by_label("API token").fill("not-the-token")
            await page.get_by_role("button", name="Use token").click()
            await expect(page.get_by_role("alert")).to_contain_text("not valid")
            await page.get_by_label("API token").fill(token)
            await page.get_by_role("button", name="Use token").click()
            await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
            await expect(page.locator("#live")).to_have_text("Live")

            # Create an HTTP monitor; the API's field errors show next to the fields first.
            await page.get_by_role("link", name="New monitor").click()
            await page.get_by_role("button", name="Create monitor").click()
            await expect(page.locator('.field-error[data-field="name"]')).to_be_visible()
            await shot("02-create-monitor-errors")
            await page.get_by_label("Name").fill("Shop")
            await page.get_by_label("Target").fill(target.url)
            await page.get_by_label("Interval (seconds)").fill("1")
            await page.get_by_label("Timeout (seconds)").fill("1")
            await page.get_by_label("Tags").fill("shop")
            await page.get_by_label("Public status page").check()
            await page.get_by_role("button", name="Create monitor").click()
            await expect(page.get_by_role("heading", name="Shop")).to_be_visible()

            # It is UP on the overview.
            await page.get_by_role("link", name="Overview").click()
            row = page.locator("tr[data-monitor]", has_text="Shop")
            status = row.locator("[data-testid=status] .badge")
            await expect(status).to_have_text("up")
            await expect(page.get_by_test_id("count-up")).to_contain_text("1")
            await shot("03-overview-up")

            # The target stops: DOWN and an incident, pushed to the open page without a reload.
            await page.evaluate("window.__sameDocument = true")
            await target.stop()
            await expect(status).to_have_text("down")
            await expect(page.get_by_test_id("incident-opened")).to_contain_text("Shop")
            assert await page.evaluate("window.__sameDocument === true"), "the page reloaded"
            await shot("04-overview-down")

            # The monitor's page shows the open incident.
            await row.get_by_role("link", name="Shop").click()
            await expect(page.get_by_test_id("current-incident")).to_be_visible()
            incidents = page.get_by_role("table", name="Incidents")
            await expect(incidents).to_contain_text("ongoing")
            await expect(page.get_by_role("table", name="Recent results")).to_contain_text("down")
            await shot("05-monitor-down")

            # The target comes back: recovery, again live.
            await page.get_by_role("link", name="Overview").click()
            await page.evaluate("window.__sameDocument = true")
            await target.start()
            await expect(status).to_have_text("up")
            await expect(page.get_by_test_id("incident-resolved")).to_contain_text("Shop")
            assert await page.evaluate("window.__sameDocument === true"), "the page reloaded"
            await row.get_by_role("link", name="Shop").click()
            await expect(incidents).to_contain_text("resolved")
            await shot("06-monitor-recovered")

            # Pause, resume and check now from the monitor's page.
            await page.get_by_role("button", name="Pause").click()
            await expect(page.locator("h1 + .panel .badge")).to_have_text("paused")
            await page.get_by_role("button", name="Resume").click()
            await expect(page.get_by_role("button", name="Pause")).to_be_visible()
            await page.get_by_role("button", name="Check now").click()
            await expect(page.locator("#toast")).to_have_text("Check queued")

            # A TCP monitor, created and deleted again.
            await page.get_by_role("link", name="New monitor").click()
            await page.get_by_label("Name").fill("Port")
            await page.get_by_label("Type").select_option("tcp")
            await expect(page.get_by_label("Expected status codes")).to_be_hidden()
            await page.get_by_label("Target").fill(f"127.0.0.1:{target.port}")
            await page.get_by_role("button", name="Create monitor").click()
            await expect(page.get_by_role("heading", name="Port")).to_be_visible()
            page.once("dialog", lambda dialog: dialog.accept())
            await page.get_by_role("button", name="Delete").click()
            await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
            await expect(page.locator("tr[data-monitor]", has_text="Shop")).to_be_visible()
            await expect(page.locator("tr[data-monitor]", has_text="Port")).to_have_count(0)

            # A webhook channel and its test message, which the receiver gets.
            await page.get_by_role("link", name="Channels").click()
            await page.get_by_label("Name").fill("Ops hook")
            await page.get_by_label("URL").fill(receiver.url)
            await page.get_by_role("button", name="Create channel").click()
            channel = page.locator("tr[data-channel]", has_text="Ops hook")
            await channel.get_by_role("button", name="Send test").click()
            await expect(channel.get_by_test_id("test-result")).to_contain_text("Test sent")
            await wait_for(
                _async(lambda: len(receiver.received) > 0), timeout=10, what="the test webhook"
            )
            await shot("07-channels")

            await page.get_by_role("link", name="Rules").click()
            await page.get_by_label("Name").fill("Shop down")
            await page.get_by_label("Channels").select_option(label="Ops hook")
            await page.get_by_role("button", name="Create rule").click()
            await expect(page.get_by_role("table", name="Rules")).to_contain_text("Shop down")
            await shot("08-rules")
            await page.get_by_role("link", name="Alerts").click()
            await expect(page.get_by_role("heading", name="Open alerts")).to_be_visible()
            await shot("09-alerts")
            await page.get_by_role("link", name="Notifications").click()
            await expect(page.get_by_role("heading", name="Notification log")).to_be_visible()
            await shot("10-notifications")

            # The public status page, logged out, on a phone in dark mode.
            phone = await browser.new_context(
                viewport={"width": 390, "height": 800}, color_scheme="dark"
            )
            public = await phone.new_page()
            public.set_default_timeout(SEEN)
            public.on(
                "request",
                lambda request: (
                    None if request.url.startswith(base) else foreign.append(request.url)
                ),
            )
            await public.goto(f"{base}/status/default")
            await expect(public.get_by_test_id("headline")).to_have_text("All systems operational")
            await expect(public.locator("[data-monitor=Shop]")).to_contain_text("Operational")
            await expect(public.get_by_text("Past incidents")).to_be_visible()
            await public.screenshot(
                path=SCREENSHOTS / "11-status-page-phone-dark.png", full_page=True
            )

            dark = await browser.new_context(
                viewport={"width": 1280, "height": 860}, color_scheme="dark"
            )
            await dark.add_init_script(f"sessionStorage.setItem('pingtower.token', {token!r})")
            overview = await dark.new_page()
            await overview.goto(f"{base}/#/overview")
            await expect(overview.locator("tr[data-monitor]", has_text="Shop")).to_be_visible()
            await overview.screenshot(path=SCREENSHOTS / "12-overview-dark.png", full_page=True)

            # The built-in login: a wrong password is refused, the right one opens the overview
            # and shows who is logged in; logging out returns to the login page.
            fresh = await browser.new_context(viewport={"width": 1280, "height": 860})
            login = await fresh.new_page()
            await login.goto(f"{base}/")
            await login.get_by_label("Username").fill("admin")
            await login.get_by_label("Password").fill("wrong password!")
            await login.get_by_role("button", name="Log in", exact=True).click()
            await expect(login.get_by_role("alert")).to_contain_text("wrong username or password")
            await login.get_by_label("Password").fill(ADMIN_PASSWORD)
            await login.get_by_role("button", name="Log in", exact=True).click()
            await expect(login.locator("tr[data-monitor]", has_text="Shop")).to_be_visible()
            await expect(login.locator("#who")).to_have_text("admin · default")
            await login.get_by_role("button", name="Log out").click()
            await expect(login).to_have_url(f"{base}/#/login")
            assert await login.evaluate("sessionStorage.length") == 0

            # 5,000 monitors: the overview still shows its first page at once.
            many = await dark.new_page()
            await many.route("**/api/v1/stats/overview", _overview_of(5000))
            started = time.monotonic()
            await many.goto(f"{base}/#/overview")
            await expect(many.get_by_test_id("count-down")).to_contain_text("500")
            elapsed = time.monotonic() - started
            await expect(many.locator("tr[data-monitor]")).to_have_count(100)
            await many.get_by_role("button", name="p95").click()
            await expect(many.locator("tr[data-monitor]").first).to_contain_text("monitor-0000")
            await many.screenshot(path=SCREENSHOTS / "13-overview-5000.png")
            print(f"overview with 5000 monitors shown in {elapsed:.2f}s")
            assert elapsed < 5, f"the overview took {elapsed:.2f}s with 5,000 monitors"
            await browser.close()
        assert foreign == [], "the dashboard requested another site"
    except BaseException:
        print(process.log())
        raise
    finally:
        process.stop()


def _overview_of(count: int) -> Callable[[Any], Awaitable[None]]:
    """A route handler answering the overview with `count` synthetic monitors, a tenth down."""
    now = datetime.now(UTC).isoformat()
    items = [
        {
            "monitor_id": str(uuid.UUID(int=n + 1)),
            "name": f"monitor-{n:04d}",
            "type": "http" if n % 3 else "tcp",
            "tags": [f"team-{n % 7}"],
            "public": False,
            "status": "down" if n % 10 == 0 else "up",
            "since": now,
            "uptime_24h": 1 - (n % 100) / 1000,
            "uptime_30d": 1 - (n % 50) / 1000,
            "p95_24h_ms": 10.0 + n,
            "last_check_at": now,
            "last_latency_ms": 5.0 + n,
        }
        for n in range(count)
    ]
    body = json.dumps({"generated_at": now, "items": items})

    async def handler(route: Any) -> None:
        await route.fulfill(status=200, content_type="application/json", body=body)

    return handler


def _async(predicate: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return predicate()

    return check
