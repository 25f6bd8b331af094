"""The dashboard in a real browser against a real embedded PingTower and a local target: log in
with the admin token, create an HTTP monitor, watch it go UP, DOWN (without reloading) and UP
again, read its per-phase timings, create a webhook channel and send a test, create and revoke
an API key, change a user's role, publish a monitor, and open the public status page logged out
(with 90 daily uptime bars, the incident in its history, and the title and logo set in the
settings), and see that a viewer is offered no changes. Screenshots of each page go to
artifacts/screenshots/."""

from __future__ import annotations

import asyncio
import json
import re
import struct
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

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
            # Where the time goes: the mean per phase over the range, as numbers in a table.
            phases = page.get_by_test_id("phase-table")
            await expect(phases.locator("tr[data-phase=connect] td").first).to_have_text(
                re.compile(r"^\d+(\.\d)? (ms|s)$")
            )
            await expect(phases.locator("tr[data-phase=first_byte] td").first).to_have_text(
                re.compile(r"^\d+(\.\d)? (ms|s)$")
            )
            await page.get_by_role("group", name="Range").get_by_role("button", name="1h").click()
            await expect(
                page.get_by_role("img", name=re.compile("Time per phase over 1h"))
            ).to_be_visible()
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
            # The page is drawn after its reads: a field filled before would be the last page's
            await expect(page.get_by_role("heading", name="Channels")).to_be_visible()
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
            # Until it is drawn, "Name" is the channels form's field
            await expect(page.get_by_role("heading", name="Rules")).to_be_visible()
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

            # Settings: an API key, shown once, that works until it is revoked.
            api = page.context.request
            await page.get_by_role("link", name="Settings").click()
            await page.get_by_label("Key name").fill("Deploy pipeline")
            await page.get_by_label("Key role").select_option("editor")
            await page.get_by_role("button", name="Create API key").click()
            key = await page.get_by_test_id("new-key-value").input_value()
            assert len(key) > 20
            listed = page.locator("tr[data-key]", has_text="Deploy pipeline")
            await expect(listed.get_by_test_id("key-state")).to_have_text("active")
            as_key = {"Authorization": f"Bearer {key}"}
            assert (await api.get(f"{base}/api/v1/monitors", headers=as_key)).status == 200
            await shot("14-settings-api-key")
            page.once("dialog", lambda dialog: dialog.accept())
            await listed.get_by_role("button", name="Revoke").click()
            await expect(listed.get_by_test_id("key-state")).to_contain_text("revoked")
            assert (await api.get(f"{base}/api/v1/monitors", headers=as_key)).status == 401

            # A user, created as a viewer and made an editor.
            await page.get_by_label("Username").fill("ops")
            await page.get_by_label("Password").fill("a long enough password")
            await page.get_by_role("button", name="Create user").click()
            await page.get_by_label("Role of ops").select_option("editor")
            await expect(page.locator("#toast")).to_have_text("ops is now editor")
            await page.reload()
            await expect(page.get_by_label("Role of ops")).to_have_value("editor")
            users = await api.get(
                f"{base}/api/v1/users", headers={"Authorization": f"Bearer {token}"}
            )
            roles = {user["username"]: user["role"] for user in (await users.json())["items"]}
            assert roles["ops"] == "editor"

            # A monitor made public from the settings shows on the public status page.
            created = await api.post(
                f"{base}/api/v1/monitors",
                headers={"Authorization": f"Bearer {token}"},
                data={"name": "Billing", "target": target.url, "interval_seconds": 60},
            )
            assert created.status == 201, await created.text()
            await page.get_by_label("Search monitors").fill("Billing")
            publish = page.get_by_label("Show Billing on the status page")
            await expect(publish).not_to_be_checked()
            await publish.check()
            await expect(page.locator("#toast")).to_have_text("Billing is on the status page")

            # The status page's title and logo: a file that only claims to be a PNG is refused
            # by the server, named under the field; a real one is saved and shown.
            branding = page.get_by_test_id("status-page-form")
            fake = tmp_path / "fake.png"
            fake.write_bytes(b"<svg><script>alert(1)</script></svg>")
            logo = tmp_path / "logo.png"
            logo.write_bytes(png(48, 16))
            await branding.get_by_label("Page title").fill("Example Shop status")
            await branding.get_by_label("Logo").set_input_files(fake)
            await branding.get_by_role("button", name="Save status page").click()
            await expect(branding.locator('.field-error[data-field="logo"]')).to_contain_text(
                "not a PNG"
            )
            await branding.get_by_label("Logo").set_input_files(logo)
            await branding.get_by_role("button", name="Save status page").click()
            await expect(page.locator("#toast")).to_have_text("Status page saved")
            await expect(branding.get_by_test_id("logo-preview")).to_have_js_property(
                "naturalWidth", 48
            )
            await shot("15-settings-users-public")

            # The status page learns of it from the monitor's event (sent after the commit):
            # wait for that before opening the page, which itself refreshes only every 30 s.
            async def billing_public() -> bool:
                summary = await api.get(f"{base}/status/default/summary.json")
                names = [m["name"] for m in (await summary.json())["monitors"]]
                return "Billing" in names

            await wait_for(billing_public, timeout=30, what="Billing on the status page")

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
            # The title and logo from the settings, the logo served by PingTower itself.
            await expect(public).to_have_title("Example Shop status")
            await expect(public.locator("#title")).to_have_text("Example Shop status")
            brand = public.locator("#logo")
            await expect(brand).to_have_attribute(
                "src", re.compile(r"^/api/v1/stats/public/default/logo\?v=")
            )
            await expect(brand).to_have_js_property("naturalWidth", 48)
            shop = public.locator(".status-monitor[data-monitor=Shop]")
            await expect(shop.locator(".status-row")).to_contain_text("Operational")
            await expect(public.locator(".status-monitor[data-monitor=Billing]")).to_be_visible()
            # 90 bars a monitor, one a day, each with its figure as text; today had an outage.
            bars = shop.get_by_test_id("uptime-bars").get_by_role("listitem")
            await expect(bars).to_have_count(90)
            await expect(bars.last).to_have_attribute(
                "aria-label", re.compile(r": \d+\.\d\d% up, down \d")
            )
            await expect(bars.first).to_have_attribute("aria-label", re.compile(r": no data$"))
            await expect(shop.get_by_test_id("uptime-90d")).to_have_text(
                re.compile(r"^\d+\.\d{3}% uptime$")
            )
            # Shop's outage above is in the history (kept by Statistics), under its day.
            await expect(public.get_by_text("Past incidents (last 90 days)")).to_be_visible()
            await expect(public.locator(".past-incident[data-monitor=Shop]")).to_contain_text(
                "down"
            )
            await public.screenshot(
                path=SCREENSHOTS / "11-status-page-phone-dark.png", full_page=True
            )
            wide = await browser.new_page(viewport={"width": 1280, "height": 860})
            await wide.goto(f"{base}/status/default")
            await expect(
                wide.locator(".status-monitor[data-monitor=Shop]").get_by_role("listitem")
            ).to_have_count(90)
            await wide.screenshot(path=SCREENSHOTS / "17-status-page-wide.png", full_page=True)
            await wide.close()

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

            # Someone who is not an admin (ops, an editor now) sees no settings and no box to
            # publish a monitor.
            await login.get_by_label("Username").fill("ops")
            await login.get_by_label("Password").fill("a long enough password")
            await login.get_by_role("button", name="Log in", exact=True).click()
            await expect(login.locator("#who")).to_have_text("ops · default")
            await expect(login.get_by_role("link", name="Channels")).to_be_visible()
            await expect(login.get_by_role("link", name="Settings")).to_be_hidden()
            await login.get_by_role("link", name="New monitor").click()
            await expect(login.get_by_label("Target")).to_be_visible()
            await expect(login.get_by_label("Public status page")).to_have_count(0)
            await login.goto(f"{base}/#/settings")
            await expect(login.get_by_role("main")).to_contain_text("Only a workspace admin")
            await login.screenshot(path=SCREENSHOTS / "16-settings-not-admin.png")
            await login.get_by_role("button", name="Log out").click()
            await expect(login).to_have_url(f"{base}/#/login")

            # A viewer is offered nothing that changes the workspace (the API refuses it too).
            watcher = await api.post(
                f"{base}/api/v1/users",
                headers={"Authorization": f"Bearer {token}"},
                data={
                    "username": "watcher",
                    "password": "a long enough password",
                    "role": "viewer",
                },
            )
            assert watcher.status == 201, await watcher.text()
            await login.get_by_label("Username").fill("watcher")
            await login.get_by_label("Password").fill("a long enough password")
            await login.get_by_role("button", name="Log in", exact=True).click()
            await expect(login.locator("#who")).to_have_text("watcher · default")
            await expect(login.get_by_role("link", name="New monitor")).to_be_hidden()
            await expect(login.get_by_role("link", name="Settings")).to_be_hidden()
            shop_row = login.locator("tr[data-monitor]", has_text="Shop")
            await shop_row.get_by_role("link", name="Shop").click()
            await expect(login.get_by_role("heading", name="Shop")).to_be_visible()
            await expect(login.get_by_role("table", name="Incidents")).to_be_visible()
            for action in ("Pause", "Check now", "Edit", "Delete"):
                await expect(login.get_by_role("button", name=action)).to_have_count(0)
            await login.get_by_role("link", name="Channels").click()
            await expect(login.get_by_role("table", name="Channels")).to_contain_text("Ops hook")
            await expect(login.get_by_role("button", name="Send test")).to_have_count(0)
            await expect(login.get_by_role("button", name="Create channel")).to_have_count(0)
            await login.screenshot(path=SCREENSHOTS / "18-channels-viewer.png")
            await login.get_by_role("button", name="Log out").click()
            await expect(login).to_have_url(f"{base}/#/login")

            # 5,000 monitors: the first page shows, and the filter answers, while the rest is
            # still held back; then every monitor is in and the page sorts them itself.
            overview_api = _Overview(5000)
            many = await dark.new_page()
            await many.route(re.compile(r"/api/v1/stats/overview(\?|$)"), overview_api.handle)
            started = time.monotonic()
            await many.goto(f"{base}/#/overview")
            await expect(many.locator("tr[data-monitor]")).to_have_count(100)
            elapsed = time.monotonic() - started
            await expect(many.locator("tr[data-monitor]").first).to_contain_text("monitor-0000")
            await expect(many.get_by_test_id("count-down")).to_contain_text("…")
            await many.get_by_role("searchbox", name="Search").fill("monitor-4999")
            await expect(many.locator("tr[data-monitor]")).to_have_count(1)
            await expect(many.locator("tr[data-monitor]")).to_contain_text("monitor-4999")
            assert not overview_api.released.is_set()
            overview_api.released.set()
            await expect(many.get_by_test_id("count-down")).to_contain_text("500")
            await many.get_by_role("searchbox", name="Search").fill("")
            await expect(many.locator("tr[data-monitor]")).to_have_count(100)
            await many.get_by_role("button", name="p95").click()
            await expect(many.locator("tr[data-monitor]").first).to_contain_text("monitor-0000")
            await many.get_by_role("button", name="p95").click()
            await expect(many.locator("tr[data-monitor]").first).to_contain_text("monitor-4999")
            await many.screenshot(path=SCREENSHOTS / "13-overview-5000.png")
            print(f"overview with 5000 monitors: first page in {elapsed:.2f}s")
            assert elapsed < 5, f"the first page took {elapsed:.2f}s with 5,000 monitors"
            await browser.close()
        assert foreign == [], "the dashboard requested another site"
    except BaseException:
        print(process.log())
        raise
    finally:
        process.stop()


class _Overview:
    """Answers the statistics overview with `count` synthetic monitors (a tenth down), paged as
    the API does (sorted by name; `q`, `limit`, `offset`); the slices the page loads in the
    background (limit over 100) wait until `released` is set."""

    def __init__(self, count: int) -> None:
        self.now = datetime.now(UTC).isoformat()
        self.items: list[dict[str, Any]] = [
            {
                "monitor_id": str(uuid.UUID(int=n + 1)),
                "name": f"monitor-{n:04d}",
                "type": "http" if n % 3 else "tcp",
                "tags": [f"team-{n % 7}"],
                "public": False,
                "status": "down" if n % 10 == 0 else "up",
                "since": self.now,
                "uptime_24h": 1 - (n % 100) / 1000,
                "uptime_30d": 1 - (n % 50) / 1000,
                "p95_24h_ms": 10.0 + n,
                "last_check_at": self.now,
                "last_latency_ms": 5.0 + n,
            }
            for n in range(count)
        ]
        self.released = asyncio.Event()

    async def handle(self, route: Any) -> None:
        params = {k: v[-1] for k, v in parse_qs(urlsplit(route.request.url).query).items()}
        assert params.get("sort", "name") == "name", params
        limit = int(params["limit"]) if "limit" in params else None
        if limit is None or limit > 100:
            await self.released.wait()
        text = params.get("q", "").lower()
        matching = [item for item in self.items if text in item["name"].lower()]
        offset = int(params.get("offset", 0))
        page = matching[offset:][:limit]
        following = offset + len(page)
        body = {
            "generated_at": self.now,
            "items": page,
            "total": len(matching),
            "offset": offset,
            "limit": limit,
            "next_offset": following if following < len(matching) else None,
        }
        await route.fulfill(status=200, content_type="application/json", body=json.dumps(body))


def png(width: int, height: int) -> bytes:
    """A small opaque PNG (RGB, a horizontal gradient): written here to need no image library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\0" + b"".join(bytes((x * 255 // width, 99, 200)) for x in range(width))
        for _ in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _async(predicate: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return predicate()

    return check
