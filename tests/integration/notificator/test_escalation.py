"""Escalation: an unacknowledged DOWN reaches further channels; acknowledging stops it."""

from __future__ import annotations

import asyncio

from pingtower.common.events import Status

from .conftest import (
    SECRET,
    MakeReceiver,
    Start,
    eventually,
    eventually_async,
    monitor_created,
    monitor_id_of,
    status_changed,
)


async def test_only_the_unacknowledged_alert_escalates(
    database_url: str, start_notificator: Start, make_receiver: MakeReceiver
) -> None:
    oncall, manager = await make_receiver(), await make_receiver()
    running = await start_notificator(database_url)
    ids = []
    for receiver in (oncall, manager):
        created = await running.client.post(
            "/api/v1/channels",
            json={
                "name": "hook",
                "type": "webhook",
                "settings": {"url": receiver.url, "secret": SECRET},
            },
        )
        ids.append(created.json()["id"])
    rule = await running.client.post(
        "/api/v1/rules",
        json={
            "name": "escalating",
            "events": ["down", "recovered"],
            "channel_ids": [ids[0]],
            "escalation_channel_ids": [ids[1]],
            "escalate_after_seconds": 1,
        },
    )
    assert rule.status_code == 201, rule.text
    handled, ignored = monitor_created(), monitor_created()
    await running.publish(
        handled,
        ignored,
        status_changed(monitor_id_of(handled), Status.UP, Status.DOWN),
        status_changed(monitor_id_of(ignored), Status.UP, Status.DOWN),
    )

    async def two_alerts() -> bool:
        return len((await running.client.get("/api/v1/alerts")).json()["items"]) == 2

    await eventually_async(two_alerts)
    alerts = (await running.client.get("/api/v1/alerts")).json()["items"]
    [to_ack] = [a for a in alerts if a["monitor_id"] == str(monitor_id_of(handled))]
    acked = await running.client.post(f"/api/v1/alerts/{to_ack['id']}/acknowledge")
    assert acked.status_code == 200

    await eventually(lambda: len(manager.accepted) == 1, timeout=5)
    await asyncio.sleep(0.3)
    [escalation] = manager.accepted
    assert escalation["kind"] == "escalation"
    assert escalation["monitor"]["id"] == str(monitor_id_of(ignored))
    assert "nobody has acknowledged" in escalation["text"]
    assert sorted(m["kind"] for m in oncall.accepted) == ["down", "down"]

    # The recovery reaches everyone who heard of the problem, the manager included.
    await running.publish(status_changed(monitor_id_of(ignored), Status.DOWN, Status.UP))
    await eventually(lambda: len(manager.accepted) == 2)
    assert manager.accepted[1]["kind"] == "recovered"


async def test_escalation_needs_both_its_channels_and_its_wait(
    database_url: str, start_notificator: Start
) -> None:
    running = await start_notificator(database_url)
    channel = await running.client.post(
        "/api/v1/channels",
        json={"name": "h", "type": "webhook", "settings": {"url": "https://hooks.example.com/x"}},
    )
    half = await running.client.post(
        "/api/v1/rules",
        json={
            "name": "r",
            "events": ["down"],
            "channel_ids": [channel.json()["id"]],
            "escalate_after_seconds": 600,
        },
    )
    assert half.status_code == 422
