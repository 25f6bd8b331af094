"""The thin path: a DOWN reaches a signed webhook once, the recovery once more; redeliveries,
retries and delays never make a second copy."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from pingtower.common.events import Status

from .conftest import (
    Running,
    StartWebhooked,
    eventually,
    eventually_async,
    monitor_created,
    monitor_id_of,
    status_changed,
)


async def notifications(running: Running) -> list[dict[str, Any]]:
    response = await running.client.get("/api/v1/notifications")
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_down_then_recovery_reach_the_webhook_exactly_once_each(
    database_url: str, start_webhooked: StartWebhooked
) -> None:
    running, receiver = await start_webhooked(database_url)
    created = monitor_created()
    monitor_id = created.payload["monitor_id"]
    went_down_at = datetime.now(UTC) - timedelta(minutes=3)
    down = status_changed(monitor_id_of(created), Status.UP, Status.DOWN, went_down_at)
    await running.publish(created, down)

    await eventually(lambda: len(receiver.accepted) == 1)
    message = receiver.accepted[0]
    assert message["kind"] == "down"
    assert message["monitor"]["id"] == monitor_id
    assert "DOWN" in message["title"]
    assert "connection refused" in message["text"]
    assert f"https://pingtower.example/monitors/{monitor_id}" in message["text"]

    # The same envelope again (a broker redelivery) changes nothing.
    await running.publish(down)
    up = status_changed(monitor_id_of(down), Status.DOWN, Status.UP)
    await running.publish(up)
    await eventually(lambda: len(receiver.accepted) == 2)
    recovery = receiver.accepted[1]
    assert recovery["kind"] == "recovered"
    assert "after 3m" in recovery["text"]

    await running.publish(up, down)  # both late redeliveries
    await asyncio.sleep(0.5)
    assert [m["kind"] for m in receiver.accepted] == ["down", "recovered"]
    assert receiver.bad_signatures == 0
    log = await notifications(running)
    assert sorted(item["status"] for item in log) == ["delivered", "delivered"]
    alerts = (await running.client.get("/api/v1/alerts")).json()["items"]
    assert alerts == []
    await eventually(
        lambda: sorted(e.type for e in running.published) == ["notification.delivered"] * 2
    )


async def test_a_receiver_that_fails_twice_gets_the_message_once_after_retries(
    database_url: str, start_webhooked: StartWebhooked
) -> None:
    running, receiver = await start_webhooked(database_url, receiver={"fail_first": 2})
    await running.new_monitor_goes_down()

    await eventually(lambda: len(receiver.accepted) == 1)
    await asyncio.sleep(0.3)
    assert receiver.requests == 3
    assert len(receiver.accepted) == 1
    [entry] = await notifications(running)
    assert entry["status"] == "delivered"
    assert entry["attempts"] == 3
    assert [a["status_code"] for a in entry["attempt_log"]] == [500, 500, 204]
    # All three attempts carried the same delivery id, so a receiver can deduplicate.
    assert len(set(receiver.delivery_ids)) == 1


async def test_a_receiver_that_always_fails_ends_failed_with_a_notification_failed_event(
    database_url: str, start_webhooked: StartWebhooked
) -> None:
    running, receiver = await start_webhooked(
        database_url, receiver={"always_fail": True}, settings={"delivery_max_attempts": 3}
    )
    channel_id = receiver.channel_id
    await running.new_monitor_goes_down()

    await eventually(lambda: any(e.type == "notification.failed" for e in running.published))
    [failed] = [e for e in running.published if e.type == "notification.failed"]
    assert failed.payload["attempts"] == 3
    assert failed.payload["channel_id"] == channel_id
    assert "HTTP 500" in failed.payload["error"]
    assert receiver.requests == 3
    [entry] = await notifications(running)
    assert entry["status"] == "failed"
    assert len(entry["attempt_log"]) == 3


async def test_a_problem_shorter_than_the_rule_delay_sends_nothing(
    database_url: str, start_webhooked: StartWebhooked
) -> None:
    running, receiver = await start_webhooked(database_url, delay_seconds=60)
    monitor_id = await running.new_monitor_goes_down()

    async def statuses(*expected: str) -> bool:
        return [item["status"] for item in await notifications(running)] == list(expected)

    await eventually_async(lambda: statuses("pending"))
    await running.publish(status_changed(monitor_id, Status.DOWN, Status.UP))
    await eventually_async(lambda: statuses("cancelled"))
    await asyncio.sleep(0.2)
    assert receiver.requests == 0
    [entry] = await notifications(running)
    assert entry["status"] == "cancelled"


async def test_a_monitor_outside_the_rule_tags_is_not_notified(
    database_url: str, start_webhooked: StartWebhooked
) -> None:
    running, receiver = await start_webhooked(database_url, tags=["prod"])
    staging = monitor_created(tags=["staging"])
    prod = monitor_created(tags=["prod", "eu"])
    await running.publish(
        staging,
        prod,
        status_changed(monitor_id_of(staging), Status.UP, Status.DOWN),
        status_changed(monitor_id_of(prod), Status.UP, Status.DOWN),
    )
    await eventually(lambda: len(receiver.accepted) == 1)
    await asyncio.sleep(0.3)
    assert [m["monitor"]["id"] for m in receiver.accepted] == [prod.payload["monitor_id"]]
