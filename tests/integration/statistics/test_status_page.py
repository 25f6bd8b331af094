"""The public status page's data and its title and logo, on SQLite and PostgreSQL, over the
story in story.py ("now" is 10 Nov 12:00): "shop" is public, "db" is not, "theirs" is public in
another workspace."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import Request
from sqlalchemy import event

from pingtower.common.events import MonitorStatusChanged, Status
from pingtower.common.runtime import build_app
from pingtower.common.security import Authenticator, Principal
from pingtower.statistics.domain.status_page import MAX_LOGO_BYTES
from tests.integration.statistics.conftest import Harness
from tests.integration.statistics.story import (
    DB,
    FOREIGN,
    NOV9,
    NOV10,
    SHOP,
    H,
    change,
    created,
    feed,
    shop_incidents,
    shop_timeline,
    wrap,
)

PROBLEM = "application/problem+json"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
SCRIPTED_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>'
)
BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa">'
    b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><svg xmlns="http://www.w3.org/2000/svg">&b;</svg>'
)
QUIET = uuid.UUID("00000000-0000-4000-8000-000000000006")


class Anonymous(Authenticator):
    async def authenticate(self, request: Request) -> Principal | None:
        return None


@pytest.fixture
async def anonymous(stats: Harness) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app("statistics", [stats.service], stats.bus, Anonymous())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://stats"
    ) as client:
        yield client


def story() -> list[Any]:
    return [
        wrap(created(SHOP, "shop", ["web", "api"], public=True)),
        wrap(created(QUIET, "quiet", public=True)),
        wrap(created(DB, "db", ["db"])),
        change(DB, NOV10 + 11 * H, Status.UP, Status.DOWN),
        wrap(created(FOREIGN, "theirs", ["web"], public=True), tenant="globex"),
        wrap(
            MonitorStatusChanged(
                monitor_id=FOREIGN, previous=Status.UNKNOWN, current=Status.DOWN, changed_at=NOV10
            ),
            tenant="globex",
        ),
        *shop_timeline(),
        *shop_incidents(),
    ]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def page(client: httpx.AsyncClient, workspace: str) -> Any:
    response = await client.get(f"/api/v1/stats/public/{workspace}/status-page")
    assert response.status_code == 200, response.text
    assert "max-age" in response.headers["cache-control"]
    return response.json()


async def test_the_page_has_90_daily_uptimes_of_public_monitors_only(
    stats: Harness, anonymous: httpx.AsyncClient
) -> None:
    await feed(stats, story())
    body = await page(anonymous, "acme")
    assert (body["workspace"], body["title"], body["logo_url"]) == ("acme", None, None)
    assert [m["name"] for m in body["monitors"]] == ["quiet", "shop"]  # not db, not theirs
    quiet, shop = body["monitors"]
    assert (shop["monitor_id"], shop["group"], quiet["group"]) == (str(SHOP), "api", "Services")
    assert (shop["status"], at(shop["since"])) == ("up", NOV10 + 3.5 * H)
    days = shop["days"]
    assert len(days) == 90
    assert (days[0]["date"], days[-1]["date"]) == ("2026-08-13", "2026-11-10")
    # 9 Nov: up 0-6, down 6-7, up 7-10, maintenance 10-12 (left out), up 12-24
    assert days[-2] == {"date": "2026-11-09", "uptime": 21 / 22, "downtime_seconds": 3600.0}
    # 10 Nov until now (12:00): down 03:00-03:30
    assert days[-1] == {"date": "2026-11-10", "uptime": 23 / 24, "downtime_seconds": 1800.0}
    assert all(day["uptime"] is None for day in days[:-2]), "nothing known before 9 Nov"
    assert shop["uptime"] == pytest.approx(32.5 / 34)
    # the same figure as the (logged-in) uptime endpoint for that day
    uptime = await stats.client.get(
        f"/api/v1/stats/monitors/{SHOP}/uptime",
        params={"from": "2026-11-09T00:00:00Z", "to": "2026-11-10T00:00:00Z"},
    )
    assert uptime.json()["uptime"] == days[-2]["uptime"]
    assert [
        (at(i["started_at"]), at(i["resolved_at"]), i["ongoing"], i["duration_seconds"], i["cause"])
        for i in shop["incidents"]
    ] == [
        (NOV10 + 3 * H, NOV10 + 3.5 * H, False, 1800.0, "http_status"),
        (NOV9 + 6 * H, NOV9 + 7 * H, False, 3600.0, "timeout"),
    ]
    assert (quiet["status"], quiet["uptime"], quiet["incidents"]) == ("unknown", None, [])
    assert {day["uptime"] for day in quiet["days"]} == {None}

    theirs = await page(anonymous, "globex")
    assert [(m["name"], m["status"]) for m in theirs["monitors"]] == [("theirs", "down")]
    assert theirs["monitors"][0]["days"][-1]["uptime"] == 0.0


async def test_a_workspace_that_publishes_nothing_answers_404_like_an_unknown_one(
    stats: Harness, anonymous: httpx.AsyncClient
) -> None:
    await feed(stats, [wrap(created(DB, "db", ["db"]))])  # acme has only a private monitor
    for workspace in ("acme", "nobody", "not%20a%20name"):
        response = await anonymous.get(f"/api/v1/stats/public/{workspace}/status-page")
        assert response.status_code == 404, workspace
        assert response.headers["content-type"].startswith(PROBLEM)
        assert "db" not in response.text
    # A title alone publishes the page (empty of monitors).
    saved = await stats.client.put("/api/v1/stats/status-page", json={"title": "Acme"})
    assert saved.status_code == 200, saved.text
    assert (await page(anonymous, "acme"))["monitors"] == []


async def test_the_page_costs_the_same_queries_for_one_or_many_monitors(
    stats: Harness, anonymous: httpx.AsyncClient
) -> None:
    statements: list[str] = []

    def count(*args: Any) -> None:
        # Only reads of the page's tables: the outbox relay polls meanwhile, and a connection
        # new to the pool asks the server about itself.
        text = str(args[2])
        if re.search(r"\bFROM (monitors|status_pages|status_intervals|incidents)\b", text):
            statements.append(text)

    engine = stats.service.engine.sync_engine
    await feed(stats, story())
    event.listen(engine, "before_cursor_execute", count)
    try:
        await page(anonymous, "acme")
        few = len(statements)
        more = [wrap(created(uuid.uuid4(), f"m{i}", public=True)) for i in range(30)]
        event.remove(engine, "before_cursor_execute", count)
        await feed(stats, more)
        event.listen(engine, "before_cursor_execute", count)
        statements.clear()
        assert len((await page(anonymous, "acme"))["monitors"]) == 32
        assert len(statements) == few == 5  # monitors, settings, status, timelines, incidents
    finally:
        if event.contains(engine, "before_cursor_execute", count):
            event.remove(engine, "before_cursor_execute", count)


async def test_an_admin_sets_the_title_and_logo_and_anyone_sees_them(
    stats: Harness, anonymous: httpx.AsyncClient
) -> None:
    await feed(stats, story())
    assert (
        await anonymous.put("/api/v1/stats/status-page", json={"title": "x"})
    ).status_code == 401
    saved = await stats.client.put("/api/v1/stats/status-page", json={"title": "  Acme   status "})
    assert saved.status_code == 200, saved.text
    assert saved.json()["title"] == "Acme status"
    uploaded = await stats.client.put(
        "/api/v1/stats/status-page/logo", content=PNG, headers={"content-type": "image/png"}
    )
    assert uploaded.status_code == 200, uploaded.text
    settings = (await stats.client.get("/api/v1/stats/status-page")).json()
    assert settings["title"] == "Acme status"
    assert settings["logo_type"] == "image/png"
    body = await page(anonymous, "acme")
    assert body["title"] == "Acme status"
    assert body["logo_url"] == settings["logo_url"]
    assert body["logo_url"].startswith("/api/v1/stats/public/acme/logo?v=")
    logo = await anonymous.get(body["logo_url"])
    assert logo.status_code == 200
    assert (logo.content, logo.headers["content-type"]) == (PNG, "image/png")
    again = await anonymous.get(body["logo_url"], headers={"if-none-match": logo.headers["etag"]})
    assert again.status_code == 304
    # the other workspace's page keeps its own (none)
    assert (await page(anonymous, "globex"))["title"] is None
    assert (await anonymous.get("/api/v1/stats/public/globex/logo")).status_code == 404

    # An SVG is served so that it cannot run script, even opened by itself.
    scripted = await stats.client.put(
        "/api/v1/stats/status-page/logo",
        content=SCRIPTED_SVG,
        headers={"content-type": "image/svg+xml"},
    )
    assert scripted.status_code == 200, scripted.text
    assert scripted.json()["logo_url"] != settings["logo_url"], "a new image, a new URL"
    served = await anonymous.get(scripted.json()["logo_url"])
    assert served.headers["content-type"].startswith("image/svg+xml")
    policy = served.headers["content-security-policy"]
    assert "sandbox" in policy
    assert "default-src 'none'" in policy
    assert "script-src" not in policy
    assert served.headers["x-content-type-options"] == "nosniff"

    removed = await stats.client.delete("/api/v1/stats/status-page/logo")
    assert removed.status_code == 204
    assert (await page(anonymous, "acme"))["logo_url"] is None
    assert (await anonymous.get("/api/v1/stats/public/acme/logo")).status_code == 404


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\0" * MAX_LOGO_BYTES, "image/png", 413),
        (b"<html><script>alert(1)</script></html>", "text/html", 415),
        (b'{"logo": "x"}', "application/json", 415),
        (b"GIF89a", "image/gif", 415),
        (b"", "image/png", 422),
        (b"\xff\xd8\xff\xe0 jpeg bytes", "image/png", 422),
        (b"not an svg", "image/svg+xml", 422),
        (b'<html xmlns="http://www.w3.org/1999/xhtml"/>', "image/svg+xml", 422),
        (BOMB, "image/svg+xml", 422),
    ],
    ids=["too big", "html", "json", "gif", "empty", "jpeg as png", "text", "not svg", "dtd"],
)
async def test_a_logo_of_the_wrong_size_or_type_is_refused(
    stats: Harness, content: bytes, content_type: str, status: int
) -> None:
    response = await stats.client.put(
        "/api/v1/stats/status-page/logo", content=content, headers={"content-type": content_type}
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["errors"][0]["field"] == "logo"
    assert (await stats.client.get("/api/v1/stats/status-page")).json()["logo_url"] is None


@pytest.mark.parametrize(
    "body",
    [{"title": "x" * 101}, {"title": "ok", "logo_url": "https://evil.example/x.png"}, {"title": 5}],
    ids=["too long", "unknown field", "not text"],
)
async def test_a_bad_title_is_refused_naming_the_field(
    stats: Harness, body: dict[str, Any]
) -> None:
    response = await stats.client.put("/api/v1/stats/status-page", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    named = " ".join(str(error.get("field", "")) for error in response.json()["errors"])
    assert "title" in named or "logo_url" in named
