"""The Notificator's API on SQLite and PostgreSQL: channels, rules, alerts, notifications;
secrets write-only and encrypted; every object scoped to its workspace."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from pingtower.common.events import Status
from pingtower.notificator.store.tables import channels

from .conftest import (
    SECRET,
    MakeReceiver,
    Start,
    StartWebhooked,
    eventually_async,
    monitor_created,
    monitor_id_of,
    status_changed,
)

OTHER = {"X-Test-Tenant": "globex"}


def webhook(url: str = "https://hooks.example.com/x", **settings: Any) -> dict[str, Any]:
    return {"name": "hook", "type": "webhook", "settings": {"url": url, **settings}}


async def test_channel_secrets_are_write_only_and_encrypted_at_rest(
    database_url: str, start_notificator: Start
) -> None:
    running = await start_notificator(database_url)
    created = await running.client.post(
        "/api/v1/channels",
        json=webhook(secret=SECRET, headers={"Authorization": "Bearer tok-123456"}),
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["settings"]["secret"] == "set"
    assert body["settings"]["headers"] == "set"
    assert body["settings"]["url"] == "https://hooks.example.com/x"
    assert SECRET not in created.text
    fetched = await running.client.get(f"/api/v1/channels/{body['id']}")
    assert SECRET not in fetched.text
    assert "tok-123456" not in fetched.text

    async with running.component.sessions() as session:
        row = (await session.execute(select(channels))).one()
    assert SECRET not in str(row.settings)
    assert SECRET not in (row.secrets or "")
    assert "tok-123456" not in (row.secrets or "")

    # Changing another field keeps the secret; null removes it.
    renamed = await running.client.patch(
        f"/api/v1/channels/{body['id']}", json={"name": "renamed", "settings": {"method": "PUT"}}
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["settings"]["secret"] == "set"
    assert renamed.json()["settings"]["method"] == "PUT"
    cleared = await running.client.patch(
        f"/api/v1/channels/{body['id']}", json={"settings": {"secret": None}}
    )
    assert cleared.json()["settings"]["secret"] == "unset"
    assert cleared.json()["settings"]["headers"] == "set"


async def test_invalid_channel_settings_name_the_field(
    database_url: str, start_notificator: Start
) -> None:
    running = await start_notificator(database_url)
    bad_url = await running.client.post("/api/v1/channels", json=webhook(url="not a url"))
    assert bad_url.status_code == 422
    assert bad_url.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in bad_url.json()["errors"]] == ["settings.url"]
    unknown_type = await running.client.post(
        "/api/v1/channels", json={"name": "x", "type": "pigeon", "settings": {}}
    )
    assert unknown_type.status_code == 422
    assert unknown_type.json()["errors"][0]["field"] == "type"
    extra = await running.client.post("/api/v1/channels", json={**webhook(), "owner": "me"})
    assert extra.status_code == 422
    reserved = await running.client.post(
        "/api/v1/channels", json=webhook(headers={"X-PingTower-Signature": "forged"})
    )
    assert reserved.status_code == 422
    assert reserved.json()["errors"][0]["field"] == "settings.headers"


async def test_another_workspaces_objects_answer_404(
    database_url: str, start_notificator: Start
) -> None:
    running = await start_notificator(database_url)
    client = running.client
    channel = (await client.post("/api/v1/channels", json=webhook())).json()
    rule = await client.post(
        "/api/v1/rules", json={"name": "r", "events": ["down"], "channel_ids": [channel["id"]]}
    )
    assert rule.status_code == 201, rule.text
    rule_id = rule.json()["id"]

    assert (await client.get(f"/api/v1/channels/{channel['id']}", headers=OTHER)).status_code == 404
    assert (await client.get(f"/api/v1/rules/{rule_id}", headers=OTHER)).status_code == 404
    patched = await client.patch(
        f"/api/v1/channels/{channel['id']}", json={"name": "mine"}, headers=OTHER
    )
    assert patched.status_code == 404
    assert (await client.delete(f"/api/v1/rules/{rule_id}", headers=OTHER)).status_code == 404
    assert (await client.get("/api/v1/channels", headers=OTHER)).json()["items"] == []
    # A rule cannot point at another workspace's channel.
    stolen = await client.post(
        "/api/v1/rules",
        json={"name": "r", "events": ["down"], "channel_ids": [channel["id"]]},
        headers=OTHER,
    )
    assert stolen.status_code == 422
    assert stolen.json()["errors"][0]["field"] == "channel_ids"


async def test_a_viewer_reads_but_cannot_change(
    database_url: str, start_notificator: Start
) -> None:
    running = await start_notificator(database_url)
    viewer = {"X-Test-Role": "viewer"}
    assert (await running.client.get("/api/v1/channels", headers=viewer)).status_code == 200
    denied = await running.client.post("/api/v1/channels", json=webhook(), headers=viewer)
    assert denied.status_code == 403


async def test_rules_round_trip_and_validate(database_url: str, start_notificator: Start) -> None:
    running = await start_notificator(database_url)
    client = running.client
    channel = (await client.post("/api/v1/channels", json=webhook())).json()
    monitor = str(uuid.uuid4())
    created = await client.post(
        "/api/v1/rules",
        json={
            "name": "prod pages",
            "monitor_ids": [monitor],
            "tags": ["prod"],
            "events": ["down", "recovered", "down"],
            "channel_ids": [channel["id"]],
            "delay_seconds": 120,
            "reminder_interval_seconds": 600,
            "reminder_count": 3,
            "severity": "warning",
        },
    )
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["events"] == ["down", "recovered"]
    assert rule["monitor_ids"] == [monitor]
    assert (rule["flap_threshold"], rule["group_window_seconds"]) == (0, 0)
    tuned = await client.patch(
        f"/api/v1/rules/{rule['id']}", json={"flap_threshold": 5, "group_window_seconds": 30}
    )
    assert (tuned.json()["flap_threshold"], tuned.json()["group_window_seconds"]) == (5, 30)
    updated = await client.patch(f"/api/v1/rules/{rule['id']}", json={"enabled": False})
    assert updated.json()["enabled"] is False
    assert updated.json()["delay_seconds"] == 120
    bad = await client.patch(f"/api/v1/rules/{rule['id']}", json={"reminder_interval_seconds": 0})
    assert bad.status_code == 422
    no_events = await client.post(
        "/api/v1/rules", json={"name": "r", "events": [], "channel_ids": [channel["id"]]}
    )
    assert no_events.status_code == 422
    assert no_events.json()["errors"][0]["field"] == "events"
    assert (await client.delete(f"/api/v1/rules/{rule['id']}")).status_code == 204
    assert (await client.get(f"/api/v1/rules/{rule['id']}")).status_code == 404


async def test_lists_are_cursor_paginated(database_url: str, start_notificator: Start) -> None:
    running = await start_notificator(database_url)
    for index in range(5):
        body = webhook(f"https://hooks.example.com/{index}")
        assert (await running.client.post("/api/v1/channels", json=body)).status_code == 201
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await running.client.get("/api/v1/channels", params=params)).json()
        seen.extend(item["settings"]["url"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"https://hooks.example.com/{i}" for i in range(5)]
    bad = await running.client.get("/api/v1/channels", params={"cursor": "nonsense"})
    assert bad.status_code == 400


async def test_test_message_reports_the_receivers_answer(
    database_url: str, start_notificator: Start, make_receiver: MakeReceiver
) -> None:
    running = await start_notificator(database_url)
    healthy = await make_receiver()
    broken = await make_receiver(always_fail=True)
    ok_channel = (
        await running.client.post("/api/v1/channels", json=webhook(healthy.url, secret=SECRET))
    ).json()
    bad_channel = (
        await running.client.post("/api/v1/channels", json=webhook(broken.url, secret=SECRET))
    ).json()

    ok = await running.client.post(f"/api/v1/channels/{ok_channel['id']}/test")
    assert ok.json() == {"ok": True, "status_code": 204, "error": None}
    assert healthy.accepted[0]["kind"] == "test"
    failed = await running.client.post(f"/api/v1/channels/{bad_channel['id']}/test")
    assert failed.json()["ok"] is False
    assert failed.json()["status_code"] == 500


async def test_acknowledging_an_alert_cancels_its_reminders(
    database_url: str, start_webhooked: StartWebhooked
) -> None:
    running, _ = await start_webhooked(
        database_url, reminder_interval_seconds=600, reminder_count=2
    )
    created = monitor_created()
    await running.publish(created, status_changed(monitor_id_of(created), Status.UP, Status.DOWN))

    async def log() -> list[tuple[str, str]]:
        items = (await running.client.get("/api/v1/notifications")).json()["items"]
        return sorted((item["kind"], item["status"]) for item in items)

    async def down_delivered() -> bool:
        return ("down", "delivered") in await log()

    await eventually_async(down_delivered)
    assert await log() == [("down", "delivered"), ("reminder", "pending"), ("reminder", "pending")]
    [alert] = (await running.client.get("/api/v1/alerts")).json()["items"]
    assert alert["monitor_name"] == created.payload["name"]
    assert alert["status"] == "open"
    assert alert["acknowledged_at"] is None

    acked = await running.client.post(f"/api/v1/alerts/{alert['id']}/acknowledge")
    assert acked.status_code == 200
    assert acked.json()["acknowledged_by"] == "user@acme"
    assert await log() == [
        ("down", "delivered"),
        ("reminder", "cancelled"),
        ("reminder", "cancelled"),
    ]
    elsewhere = await running.client.post(
        f"/api/v1/alerts/{alert['id']}/acknowledge", headers=OTHER
    )
    assert elsewhere.status_code == 404


async def test_a_channel_over_its_rate_limit_holds_messages_instead_of_dropping_them(
    database_url: str, start_webhooked: StartWebhooked
) -> None:
    running, receiver = await start_webhooked(database_url)
    channel_id = receiver.channel_id
    limited = await running.client.patch(
        f"/api/v1/channels/{channel_id}", json={"rate_limit_per_minute": 2}
    )
    assert limited.json()["rate_limit_per_minute"] == 2
    monitors = [monitor_created() for _ in range(4)]
    await running.publish(
        *monitors, *(status_changed(monitor_id_of(m), Status.UP, Status.DOWN) for m in monitors)
    )

    async def two_sent_two_held() -> bool:
        items = (await running.client.get("/api/v1/notifications")).json()["items"]
        return sorted((i["status"], i["attempts"]) for i in items) == [
            ("delivered", 1),
            ("delivered", 1),
            ("pending", 0),
            ("pending", 0),
        ]

    await eventually_async(two_sent_two_held)
    assert len(receiver.accepted) == 2
    items = (await running.client.get("/api/v1/notifications")).json()["items"]
    held = [datetime.fromisoformat(i["due_at"]) for i in items if i["status"] == "pending"]
    assert all(due > datetime.now(UTC) + timedelta(seconds=50) for due in held)


async def test_quiet_hours_hold_a_channels_messages_until_the_window_ends(
    database_url: str, start_webhooked: StartWebhooked
) -> None:
    running, receiver = await start_webhooked(database_url)
    channel_id = receiver.channel_id
    now = datetime.now(UTC)
    window = {
        "start": (now - timedelta(hours=1)).strftime("%H:%M"),
        "end": (now + timedelta(hours=1)).strftime("%H:%M"),
        "timezone": "UTC",
    }
    quiet = await running.client.patch(
        f"/api/v1/channels/{channel_id}", json={"quiet_hours": window}
    )
    assert quiet.status_code == 200, quiet.text
    assert quiet.json()["quiet_hours"]["timezone"] == "UTC"
    await running.new_monitor_goes_down()

    async def held_until_the_end() -> bool:
        [entry] = (await running.client.get("/api/v1/notifications")).json()["items"]
        due = datetime.fromisoformat(entry["due_at"])
        return (entry["status"], entry["attempts"]) == ("pending", 0) and (
            now + timedelta(minutes=58) < due <= now + timedelta(hours=1)
        )

    await eventually_async(held_until_the_end)
    assert receiver.requests == 0

    unknown_zone = await running.client.patch(
        f"/api/v1/channels/{channel_id}",
        json={"quiet_hours": {**window, "timezone": "Mars/Olympus"}},
    )
    assert unknown_zone.status_code == 422
    assert unknown_zone.json()["errors"][0]["field"] == "quiet_hours.timezone"
