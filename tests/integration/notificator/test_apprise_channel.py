"""An Apprise channel through the API: URLs hidden, a test send and a DOWN reach a local
server over Apprise's generic json:// scheme."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from pingtower.common.events import Status

from .conftest import (
    Start,
    eventually,
    monitor_created,
    monitor_id_of,
    status_changed,
)


@pytest.fixture
async def json_sink() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A local server that records what Apprise's json:// posts; ("host:port", received)."""
    received: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        received.append({"path": request.path, **json.loads(await request.read())})
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"127.0.0.1:{port}", received
    await runner.cleanup()


async def test_a_down_reaches_an_apprise_url_and_the_url_is_never_shown(
    sqlite_url: str, start_notificator: Start, json_sink: tuple[str, list[dict[str, Any]]]
) -> None:
    host_port, received = json_sink
    running = await start_notificator(sqlite_url)
    url = f"json://{host_port}/alerts?token=s3cret"
    channel = await running.client.post(
        "/api/v1/channels",
        json={"name": "apprise", "type": "apprise", "settings": {"urls": [url]}},
    )
    assert channel.status_code == 201, channel.text
    assert channel.json()["settings"] == {"urls": "set"}
    assert "s3cret" not in channel.text
    channel_id = channel.json()["id"]

    tested = await running.client.post(f"/api/v1/channels/{channel_id}/test")
    assert tested.status_code == 200, tested.text
    assert received[-1]["title"] == "PingTower test message"

    rule = await running.client.post(
        "/api/v1/rules",
        json={"name": "all", "events": ["down"], "channel_ids": [channel_id]},
    )
    assert rule.status_code == 201, rule.text
    created = monitor_created()
    await running.publish(created, status_changed(monitor_id_of(created), Status.UP, Status.DOWN))
    await eventually(lambda: len(received) == 2)
    assert received[1]["path"] == "/alerts"
    assert received[1]["title"] == f"DOWN: {created.payload['name']}"
    assert "connection refused" in received[1]["message"]


async def test_an_unknown_apprise_url_is_refused_naming_the_field_not_the_url(
    sqlite_url: str, start_notificator: Start
) -> None:
    running = await start_notificator(sqlite_url)
    refused = await running.client.post(
        "/api/v1/channels",
        json={"name": "a", "type": "apprise", "settings": {"urls": ["bogus://tok3n"]}},
    )
    assert refused.status_code == 422
    assert "urls[0]" in refused.text
    assert "tok3n" not in refused.text
