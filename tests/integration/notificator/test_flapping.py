"""Flap damping: a monitor that keeps changing state produces one flapping notice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from pingtower.common.events import Status
from pingtower.notificator.consumer import close_quiet_flapping_alerts

from .conftest import (
    StartWebhooked,
    eventually,
    eventually_async,
    monitor_created,
    monitor_id_of,
    status_changed,
)


async def test_a_flapping_monitor_produces_one_flapping_notice(
    database_url: str, start_webhooked: StartWebhooked
) -> None:
    running, receiver = await start_webhooked(
        database_url, flap_threshold=3, flap_window_seconds=300
    )
    created = monitor_created()
    monitor_id = monitor_id_of(created)
    start = datetime.now(UTC) - timedelta(minutes=30)
    flaps = [
        status_changed(
            monitor_id,
            Status.UP if i % 2 == 0 else Status.DOWN,
            Status.DOWN if i % 2 == 0 else Status.UP,
            start + timedelta(seconds=10 * i),
        )
        for i in range(12)
    ]
    await running.publish(created, flaps[0])
    await eventually(lambda: len(receiver.accepted) == 1)
    await running.publish(flaps[1])
    await eventually(lambda: len(receiver.accepted) == 2)
    await running.publish(*flaps[2:])
    await eventually(lambda: len(receiver.accepted) == 3)
    await asyncio.sleep(0.3)
    # The third change's "down" was still queued when the fourth made it flapping: superseded.
    assert [m["kind"] for m in receiver.accepted] == ["down", "recovered", "flapping"]
    assert "keeps changing state" in receiver.accepted[-1]["text"]
    [alert] = (await running.client.get("/api/v1/alerts")).json()["items"]
    assert alert["problem"] == "flapping"

    # Quiet and up for longer than the window: housekeeping closes the flapping alert.
    async with running.component.sessions() as session, session.begin():
        closed = await close_quiet_flapping_alerts(session, datetime.now(UTC))
    assert closed == 1

    async def no_open_alerts() -> bool:
        return (await running.client.get("/api/v1/alerts")).json()["items"] == []

    await eventually_async(no_open_alerts)
    # Normal life resumes: the next outage is told again.
    await running.publish(status_changed(monitor_id, Status.UP, Status.DOWN))
    await eventually(lambda: len(receiver.accepted) == 4)
    assert receiver.accepted[-1]["kind"] == "down"
