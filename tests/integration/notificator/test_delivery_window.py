"""The delivery worker sends several messages of one channel at once (a bounded window), claims
at most its batch, keeps a channel's rate limit across concurrent sends and replicas, never lets
a recovery overtake its DOWN, and is woken by a new message rather than by its poll."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from pingtower.common.events import Status

from .conftest import (
    Running,
    Start,
    eventually,
    eventually_async,
    monitor_created,
    monitor_id_of,
    serve_hook,
    spare_worker,
    status_changed,
)


@dataclass
class GatedReceiver:
    """A webhook receiver that holds requests while `gate` is closed, and counts how many it
    holds at once; `held_kinds` limits holding to messages of those kinds (all when empty)."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    held_kinds: frozenset[str] = frozenset()
    in_flight: int = 0
    most_in_flight: int = 0
    accepted: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if not self.held_kinds or body.get("kind") in self.held_kinds:
                await self.gate.wait()
            self.accepted.append(body)
        finally:
            self.in_flight -= 1
        return web.Response(status=204)


MakeGated = Callable[..., Awaitable[GatedReceiver]]


@pytest.fixture
async def make_gated() -> AsyncIterator[MakeGated]:
    runners: list[web.AppRunner] = []
    receivers: list[GatedReceiver] = []

    async def make(**kwargs: Any) -> GatedReceiver:
        receiver = GatedReceiver(**kwargs)
        receivers.append(receiver)
        receiver.url = await serve_hook(receiver.handle, runners)
        return receiver

    yield make
    for receiver in receivers:
        receiver.gate.set()  # let held requests finish, so the workers can stop
    for runner in runners:
        await runner.cleanup()


async def webhook_rule(
    running: Running, url: str, rule: dict[str, Any] | None = None, **channel: Any
) -> str:
    created = await running.client.post(
        "/api/v1/channels",
        json={"name": "hook", "type": "webhook", "settings": {"url": url}, **channel},
    )
    assert created.status_code == 201, created.text
    channel_id: str = created.json()["id"]
    created_rule = await running.client.post(
        "/api/v1/rules",
        json={
            "name": "all",
            "events": ["down", "recovered"],
            "channel_ids": [channel_id],
            **(rule or {}),
        },
    )
    assert created_rule.status_code == 201, created_rule.text
    return channel_id


async def notifications(running: Running) -> list[dict[str, Any]]:
    response = await running.client.get("/api/v1/notifications", params={"limit": 200})
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def publish_downs(running: Running, count: int) -> None:
    monitors = [monitor_created() for _ in range(count)]
    downs = [status_changed(monitor_id_of(m), Status.UP, Status.DOWN) for m in monitors]
    await running.publish(*monitors, *downs)


async def start_with_a_slow_poll(start_notificator: Start, database_url: str) -> Running:
    """A Notificator whose delivery worker polls every 300 s."""
    running = await start_notificator(database_url)
    worker = running.component.worker
    await worker.stop()
    worker.poll_seconds = 300
    worker.start()
    return running


async def test_one_channels_messages_go_several_at_once_but_never_more_than_the_window(
    database_url: str, start_notificator: Start, make_gated: MakeGated
) -> None:
    receiver = await make_gated()
    running = await start_notificator(database_url, delivery_channel_concurrency=4)
    await webhook_rule(running, receiver.url)
    await publish_downs(running, 10)

    await eventually(lambda: receiver.in_flight == 4)
    receiver.gate.set()
    await eventually(lambda: len(receiver.accepted) == 10)
    assert receiver.most_in_flight == 4

    async def all_delivered_at_once() -> bool:
        items = await notifications(running)
        return [(i["status"], i["attempts"]) for i in items] == [("delivered", 1)] * 10

    await eventually_async(all_delivered_at_once)


async def test_a_claim_takes_at_most_its_batch(
    database_url: str, start_notificator: Start, make_gated: MakeGated
) -> None:
    receiver = await make_gated()
    running = await start_notificator(database_url)
    await running.component.worker.stop()
    await webhook_rule(running, receiver.url)
    await publish_downs(running, 12)
    await eventually_async(lambda: _count(running, "pending", 12))

    spare = spare_worker(running, batch=5)
    assert len(await spare.claim()) == 5
    assert len(await spare.claim()) == 5
    assert len(await spare.claim()) == 2
    assert await spare.claim() == []


async def _count(running: Running, status: str, expected: int) -> bool:
    items = await notifications(running)
    return sum(1 for i in items if i["status"] == status) == expected


def held_a_minute(items: list[dict[str, Any]]) -> bool:
    """Every pending message is held by the rate limit: not attempted, due in about a minute."""
    soon = datetime.now(UTC) + timedelta(seconds=45)
    return all(
        i["attempts"] == 0 and datetime.fromisoformat(i["due_at"]) > soon
        for i in items
        if i["status"] == "pending"
    )


async def test_a_rate_limit_holds_across_concurrent_sends(
    database_url: str, start_notificator: Start, make_gated: MakeGated
) -> None:
    receiver = await make_gated()
    receiver.gate.set()
    running = await start_notificator(database_url)
    await webhook_rule(running, receiver.url, rate_limit_per_minute=3)
    await publish_downs(running, 10)

    async def three_sent_seven_held() -> bool:
        items = await notifications(running)
        statuses = sorted(i["status"] for i in items)
        return statuses == ["delivered"] * 3 + ["pending"] * 7 and held_a_minute(items)

    # Once settled nothing is due for about a minute, so the count below cannot move.
    await eventually_async(three_sent_seven_held)
    assert len(receiver.accepted) == 3


async def test_a_rate_limit_holds_across_replicas_on_postgresql(
    pg_url: str, start_notificator: Start, make_gated: MakeGated
) -> None:
    receiver = await make_gated()
    receiver.gate.set()
    first = await start_notificator(pg_url)
    second = await start_notificator(pg_url)
    for replica in (first, second):
        replica.component.worker.batch = 2  # small batches: both workers take a share
    await webhook_rule(first, receiver.url, rate_limit_per_minute=5)
    monitors = [monitor_created() for _ in range(16)]
    downs = [status_changed(monitor_id_of(m), Status.UP, Status.DOWN) for m in monitors]
    await asyncio.gather(first.publish(*monitors, *downs), second.publish(*monitors, *downs))

    async def five_sent_the_rest_held() -> bool:
        items = await notifications(first)
        statuses = sorted(i["status"] for i in items)
        return statuses == ["delivered"] * 5 + ["pending"] * 11 and held_a_minute(items)

    await eventually_async(five_sent_the_rest_held, timeout=20)
    assert len(receiver.accepted) == 5


async def test_a_recovery_waits_until_its_down_in_flight_is_recorded(
    database_url: str, start_notificator: Start, make_gated: MakeGated
) -> None:
    receiver = await make_gated(held_kinds=frozenset({"down"}))
    running = await start_notificator(database_url)
    await webhook_rule(running, receiver.url)
    created = monitor_created()
    await running.publish(created, status_changed(monitor_id_of(created), Status.UP, Status.DOWN))
    await eventually(lambda: receiver.in_flight == 1)  # the DOWN is being sent, and held

    await running.publish(status_changed(monitor_id_of(created), Status.DOWN, Status.UP))

    async def recovery_queued() -> bool:
        items = await notifications(running)
        return sorted((i["kind"], i["status"]) for i in items) == [
            ("down", "sending"),
            ("recovered", "pending"),
        ]

    await eventually_async(recovery_queued)
    # Another replica's worker finds the recovery due, but not claimable behind its DOWN.
    assert await spare_worker(running).claim() == []

    receiver.gate.set()
    await eventually(lambda: len(receiver.accepted) == 2)
    assert [m["kind"] for m in receiver.accepted] == ["down", "recovered"]

    async def both_recorded_once() -> bool:
        items = await notifications(running)
        return sorted((i["kind"], i["status"], i["attempts"]) for i in items) == [
            ("down", "delivered", 1),
            ("recovered", "delivered", 1),
        ]

    await eventually_async(both_recorded_once)


async def test_a_new_message_wakes_the_worker_without_waiting_for_its_poll(
    database_url: str, start_notificator: Start, make_gated: MakeGated
) -> None:
    receiver = await make_gated()
    receiver.gate.set()
    # A poll (300 s) far beyond the wait below, itself long enough for a loaded machine: only
    # the wake-up can deliver in time.
    running = await start_with_a_slow_poll(start_notificator, database_url)
    await webhook_rule(running, receiver.url)
    await publish_downs(running, 1)
    await eventually(lambda: len(receiver.accepted) == 1, timeout=30)


async def test_a_delayed_message_goes_when_due_without_waiting_for_the_poll(
    database_url: str, start_notificator: Start, make_gated: MakeGated
) -> None:
    receiver = await make_gated()
    receiver.gate.set()
    # A poll far beyond the wait below: only the due time can deliver in time.
    running = await start_with_a_slow_poll(start_notificator, database_url)
    await webhook_rule(running, receiver.url, rule={"delay_seconds": 2})
    await publish_downs(running, 1)

    async def waiting() -> bool:
        return await _count(running, "pending", 1)

    await eventually_async(waiting)
    await eventually(lambda: len(receiver.accepted) == 1, timeout=30)
