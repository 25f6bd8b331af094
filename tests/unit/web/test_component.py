"""The WebUi component inside an app: pages and assets served locally, the status page without
login, and the live stream scoped to the caller's workspace (through a real HTTP server, since the
stream never ends by itself)."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
import uvicorn

from pingtower.common.events import Envelope, MonitorCreated, MonitorStatusChanged, Status
from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.runtime import build_app
from pingtower.common.security import Principal, TokenAuthenticator
from pingtower.common.settings import Settings
from pingtower.web.service import build
from tests.e2e.harness import free_port

# A reference that would make the browser load something from another origin.
FOREIGN = re.compile(r"""(src=|href=|from\s|import\(|url\(|fetch\()\s*["']?(https?:)?//""")

TOKENS = {
    "acme-token": Principal("ann", "acme", frozenset({"viewer"})),
    "globex-token": Principal("bob", "globex", frozenset({"viewer"})),
}


@pytest.fixture
async def served(tmp_path: object) -> AsyncIterator[tuple[str, InProcessBus]]:
    bus = InProcessBus()
    components = build(Settings(), bus, ["web"])
    app = build_app("web", components, bus, TokenAuthenticator(TOKENS))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    for _ in range(100):
        if server.started:
            break
        await asyncio.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}", bus
    server.should_exit = True
    await asyncio.wait_for(task, 10)


def envelope(tenant: str, contract: MonitorCreated | MonitorStatusChanged) -> Envelope:
    return Envelope.wrap(contract, producer="pinger", tenant=tenant)


async def test_the_shell_and_its_assets_are_served_locally_with_cache_headers(
    served: tuple[str, InProcessBus],
) -> None:
    base, _ = served
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        shell = await client.get("/")
        assert shell.status_code == 200
        assert shell.headers["cache-control"] == "no-cache"
        assert "default-src 'self'" in shell.headers["content-security-policy"]
        assert not FOREIGN.search(shell.text), "the shell loads nothing from another site"
        for asset in ("app.js", "api.js", "ui.js", "charts.js", "status.js", "style.css"):
            response = await client.get(f"/static/{asset}")
            assert response.status_code == 200, asset
            assert "max-age" in response.headers["cache-control"]
            assert not FOREIGN.search(response.text), f"{asset} loads nothing from another site"
        assert (await client.get("/static/..%2Fcomponent.py")).status_code == 404
        assert (await client.get("/static/missing.js")).status_code == 404


async def test_the_status_page_needs_no_login_and_lists_public_monitors_only(
    served: tuple[str, InProcessBus],
) -> None:
    base, bus = served
    public, private = uuid.uuid4(), uuid.uuid4()
    await bus.publish(
        [
            envelope(
                "acme",
                MonitorCreated(
                    monitor_id=public,
                    name="API",
                    type="http",
                    target="https://x",
                    tags=[],
                    public=True,
                    interval_seconds=60,
                ),
            ),
            envelope(
                "acme",
                MonitorCreated(
                    monitor_id=private,
                    name="Intranet",
                    type="http",
                    target="https://y",
                    tags=[],
                    interval_seconds=60,
                ),
            ),
            envelope(
                "acme",
                MonitorStatusChanged(
                    monitor_id=public,
                    previous=Status.UP,
                    current=Status.DOWN,
                    changed_at=datetime.now(UTC),
                ),
            ),
        ]
    )
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        page = await client.get("/status/acme")
        summary = (await client.get("/status/acme/summary.json")).json()
        assert (await client.get("/status/acme/summary.json")).status_code == 200
        other = (await client.get("/status/globex/summary.json")).json()
    assert page.status_code == 200
    assert "/static/status.js" in page.text
    assert summary["overall"] == "major_outage"
    assert [(m["monitor_id"], m["name"], m["status"]) for m in summary["monitors"]] == [
        (str(public), "API", "down")
    ]
    assert "past_incidents" not in summary, "Statistics serves the history"
    assert other["monitors"] == []


async def test_the_live_stream_needs_credentials(served: tuple[str, InProcessBus]) -> None:
    base, _ = served
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        response = await client.get("/api/v1/events/stream")
    assert response.status_code == 401


async def test_the_live_stream_pushes_status_changes_of_the_callers_workspace_only(
    served: tuple[str, InProcessBus],
) -> None:
    base, bus = served
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    async with (
        httpx.AsyncClient(base_url=base, timeout=5) as client,
        client.stream(
            "GET", "/api/v1/events/stream", headers={"Authorization": "Bearer acme-token"}
        ) as stream,
    ):
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.aiter_lines()
        assert await anext(lines) == "retry: 3000"
        await bus.publish(
            [
                envelope(
                    "globex",
                    MonitorStatusChanged(
                        monitor_id=theirs,
                        previous=Status.UP,
                        current=Status.DOWN,
                        changed_at=datetime.now(UTC),
                    ),
                ),
                envelope(
                    "acme",
                    MonitorStatusChanged(
                        monitor_id=mine,
                        previous=Status.UP,
                        current=Status.DOWN,
                        changed_at=datetime.now(UTC),
                    ),
                ),
            ]
        )

        async def first_event() -> tuple[str, dict[str, object]]:
            kind = ""
            async for line in lines:
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    return kind, json.loads(line.removeprefix("data: "))
            raise AssertionError("the stream ended")

        kind, data = await asyncio.wait_for(first_event(), 5)
    assert kind == "monitor.status_changed"
    payload = data["payload"]
    assert isinstance(payload, dict)
    assert (payload["monitor_id"], payload["current"]) == (str(mine), "down")
