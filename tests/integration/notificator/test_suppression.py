"""Messages held back: silences (at decision and at send time), and a child whose parent is
down."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from pingtower.common.events import Status

from .conftest import (
    Running,
    Start,
    StartWebhooked,
    eventually,
    eventually_async,
    monitor_created,
    monitor_id_of,
    status_changed,
)


async def statuses(running: Running) -> list[tuple[str, str]]:
    items = (await running.client.get("/api/v1/notifications")).json()["items"]
    return sorted((item["kind"], item["status"]) for item in items)


async def silence(running: Running, **body: Any) -> dict[str, Any]:
    ends = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    response = await running.client.post("/api/v1/silences", json={"ends_at": ends, **body})
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_a_silenced_monitor_notifies_nobody_not_even_on_recovery(
    database_url: str, start_webhooked: StartWebhooked
) -> None:
    running, receiver = await start_webhooked(database_url)
    quiet, loud = monitor_created(tags=["batch"]), monitor_created(tags=["web"])
    await silence(running, tags=["batch"], comment="nightly batch maintenance")
    await running.publish(
        quiet,
        loud,
        status_changed(monitor_id_of(quiet), Status.UP, Status.DOWN),
        status_changed(monitor_id_of(loud), Status.UP, Status.DOWN),
    )
    await eventually(lambda: len(receiver.accepted) == 1)
    await running.publish(status_changed(monitor_id_of(quiet), Status.DOWN, Status.UP))

    async def quiet_alert_resolved() -> bool:
        items = (await running.client.get("/api/v1/alerts")).json()["items"]
        return [a["monitor_id"] for a in items] == [str(monitor_id_of(loud))]

    await eventually_async(quiet_alert_resolved)
    await asyncio.sleep(0.2)
    assert [m["monitor"]["id"] for m in receiver.accepted] == [str(monitor_id_of(loud))]


async def test_a_silence_created_while_a_message_waits_holds_it_back(
    database_url: str, start_webhooked: StartWebhooked
) -> None:
    running, receiver = await start_webhooked(database_url, delay_seconds=1)
    created = monitor_created()
    await running.publish(created, status_changed(monitor_id_of(created), Status.UP, Status.DOWN))

    async def queued() -> bool:
        return await statuses(running) == [("down", "pending")]

    await eventually_async(queued)
    await silence(running, monitor_ids=[str(monitor_id_of(created))])

    async def held_back() -> bool:
        return await statuses(running) == [("down", "cancelled")]

    await eventually_async(held_back, timeout=5)
    assert receiver.requests == 0


async def test_an_expired_silence_no_longer_holds_messages(
    database_url: str, start_webhooked: StartWebhooked
) -> None:
    running, receiver = await start_webhooked(database_url)
    created = await silence(running)
    expired = await running.client.patch(
        f"/api/v1/silences/{created['id']}",
        json={"ends_at": (datetime.now(UTC) - timedelta(seconds=1)).isoformat()},
    )
    assert expired.status_code == 422  # cannot end before it started
    assert (await running.client.delete(f"/api/v1/silences/{created['id']}")).status_code == 204
    assert (await running.client.get("/api/v1/silences")).json()["items"] == []
    monitor = monitor_created()
    await running.publish(monitor, status_changed(monitor_id_of(monitor), Status.UP, Status.DOWN))
    await eventually(lambda: len(receiver.accepted) == 1)


async def test_a_child_of_a_down_parent_is_not_notified_separately(
    database_url: str, start_webhooked: StartWebhooked
) -> None:
    running, receiver = await start_webhooked(database_url)
    host = monitor_created()
    service = monitor_created(parent_id=monitor_id_of(host))
    await running.publish(
        host,
        service,
        status_changed(monitor_id_of(host), Status.UP, Status.DOWN),
        status_changed(monitor_id_of(service), Status.UP, Status.DOWN),
    )
    await eventually(lambda: len(receiver.accepted) == 1)
    await asyncio.sleep(0.3)
    assert [m["monitor"]["id"] for m in receiver.accepted] == [str(monitor_id_of(host))]


async def test_silences_validate_and_belong_to_their_workspace(
    database_url: str, start_notificator: Start
) -> None:
    running = await start_notificator(database_url)
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    backwards = await running.client.post("/api/v1/silences", json={"ends_at": past})
    assert backwards.status_code == 422
    naive = await running.client.post("/api/v1/silences", json={"ends_at": "2030-01-01T00:00:00"})
    assert naive.status_code == 422
    assert naive.json()["errors"][0]["field"] == "ends_at"
    created = await silence(running)
    other = {"X-Test-Tenant": "globex"}
    assert (
        await running.client.get(f"/api/v1/silences/{created['id']}", headers=other)
    ).status_code == 404


async def test_a_monitor_put_in_maintenance_while_its_message_waits_sends_nothing(
    database_url: str, start_webhooked: StartWebhooked
) -> None:
    running, receiver = await start_webhooked(database_url, delay_seconds=1)
    created = monitor_created()
    monitor_id = monitor_id_of(created)
    went_down = datetime.now(UTC)
    await running.publish(
        created,
        status_changed(monitor_id, Status.UP, Status.DOWN, went_down),
        status_changed(
            monitor_id, Status.DOWN, Status.MAINTENANCE, went_down + timedelta(milliseconds=100)
        ),
    )

    async def held_back() -> bool:
        return await statuses(running) == [("down", "cancelled")]

    await eventually_async(held_back, timeout=5)
    assert receiver.requests == 0
    [entry] = (await running.client.get("/api/v1/notifications")).json()["items"]
    assert entry["last_error"] == "cancelled: monitor is maintenance"
