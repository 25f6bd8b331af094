"""The spine's thin path, driven through the public API exactly as a user would, in either mode:
create a webhook channel and a rule, create an HTTP monitor, see it UP and counted by the
statistics, take the target down, see DOWN and exactly one notification, bring it back, see UP
and exactly one more."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.e2e.harness import Target, WebhookReceiver, wait_for


async def run_thin_path(api: httpx.AsyncClient, target: Target, receiver: WebhookReceiver) -> str:
    """Returns the monitor's id."""

    async def ok(response: httpx.Response, status: int = 200) -> Any:
        assert response.status_code == status, f"{response.request.url}: {response.text}"
        return response.json() if response.content else None

    channel = await ok(
        await api.post(
            "/api/v1/channels",
            json={"name": "ops hook", "type": "webhook", "settings": {"url": receiver.url}},
        ),
        201,
    )
    await ok(
        await api.post(
            "/api/v1/rules",
            json={
                "name": "everything",
                "events": ["down", "recovered"],
                "channel_ids": [channel["id"]],
            },
        ),
        201,
    )
    monitor = await ok(
        await api.post(
            "/api/v1/monitors",
            json={
                "name": "target health",
                "type": "http",
                "target": target.url,
                "interval_seconds": 1,
                "timeout_seconds": 1,
                "failures_before_down": 2,
            },
        ),
        201,
    )
    monitor_url = f"/api/v1/monitors/{monitor['id']}"

    async def status_is(expected: str) -> bool:
        return bool((await ok(await api.get(monitor_url)))["status"] == expected)

    await wait_for(lambda: status_is("up"), timeout=30, what="the monitor to be UP")

    async def counted() -> bool:
        uptime = await ok(await api.get(f"/api/v1/stats/monitors/{monitor['id']}/uptime"))
        return bool(uptime["checks"] >= 2 and uptime["successful_checks"] >= 2)

    await wait_for(counted, timeout=30, what="statistics to count the checks")

    await target.stop()
    await wait_for(lambda: status_is("down"), timeout=30, what="the monitor to go DOWN")

    def kinds() -> list[str]:
        return [body.get("kind", "?") for body in receiver.received]

    async def notified_down() -> bool:
        return "down" in kinds()

    await wait_for(notified_down, timeout=30, what="the DOWN notification")
    details = await ok(await api.get(monitor_url))
    assert details["incident_id"] is not None, details

    await target.start()
    await wait_for(lambda: status_is("up"), timeout=30, what="the monitor to recover")

    async def notified_recovery() -> bool:
        return "recovered" in kinds()

    await wait_for(notified_recovery, timeout=30, what="the recovery notification")
    # Give any duplicate (a redelivery, a second relay) time to show up before counting.
    await asyncio.sleep(3)
    assert kinds() == ["down", "recovered"], receiver.received

    incidents = await ok(await api.get(f"/api/v1/stats/monitors/{monitor['id']}/incidents"))
    assert len(incidents["items"]) == 1, incidents
    assert incidents["items"][0]["resolved_at"] is not None, incidents
    return str(monitor["id"])
