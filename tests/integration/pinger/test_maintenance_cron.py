"""Cron maintenance windows through the API and the evaluator, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from pingtower.common.events import CheckCompleted, Envelope, Outcome, utcnow
from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.runtime import Component
from pingtower.common.settings import Settings
from pingtower.pinger.store.database import PingerDatabase
from pingtower.pinger.store.tables import monitors
from tests.integration.pinger.conftest import MakeUrl
from tests.integration.pinger.harness import Collector, eventually, running_pinger

ZONE = "Asia/Kolkata"  # a half-hour offset: a window read in UTC would be off by 5.5 hours


def daily_at(moment_utc: Any) -> str:
    local = moment_utc.astimezone(ZoneInfo(ZONE))
    return f"{local.minute} {local.hour} * * *"


@pytest.fixture
async def pinger(
    shared_db_url: MakeUrl,
) -> AsyncIterator[tuple[httpx.AsyncClient, list[Component], InProcessBus]]:
    bus = InProcessBus()
    settings = Settings(pinger_database_url=await shared_db_url(), outbox_poll_seconds=0.05)
    async with running_pinger(settings, bus, ["pinger-api", "evaluator"]) as (client, parts):
        yield client, parts, bus


async def create_window(client: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    body = {"name": "nightly backup", "kind": "cron", "timezone": ZONE, **fields}
    return await client.post("/api/v1/maintenance-windows", json=body)


async def test_a_cron_window_is_created_and_reports_whether_it_is_active(
    pinger: tuple[httpx.AsyncClient, list[Component], InProcessBus],
) -> None:
    client, _, _ = pinger
    started = utcnow() - timedelta(minutes=1)
    response = await create_window(client, cron=daily_at(started), duration_minutes=60)
    assert response.status_code == 201, response.text
    window = response.json()
    assert window["cron"] == daily_at(started)
    assert window["duration_minutes"] == 60
    assert window["active_now"] is True
    assert (await client.get(f"/api/v1/maintenance-windows/{window['id']}")).json() == window

    later = await create_window(
        client, cron=daily_at(utcnow() + timedelta(hours=12)), duration_minutes=60
    )
    assert later.json()["active_now"] is False


async def test_cron_window_validation_names_the_field(
    pinger: tuple[httpx.AsyncClient, list[Component], InProcessBus],
) -> None:
    client, _, _ = pinger
    cases: list[tuple[dict[str, Any], str]] = [
        ({"duration_minutes": 30}, "cron"),
        ({"cron": "every night", "duration_minutes": 30}, "cron"),
        ({"cron": "0 0 31 2 *", "duration_minutes": 30}, "cron"),
        ({"cron": "0 3 * * *"}, "duration_minutes"),
        ({"cron": "0 3 * * *", "duration_minutes": 0}, "duration_minutes"),
        ({"cron": "0 3 * * *", "duration_minutes": 30, "timezone": "Nowhere/Else"}, "timezone"),
        ({"cron": "0 3 * * *" * 40, "duration_minutes": 30}, "cron"),
    ]
    for fields, field in cases:
        response = await create_window(client, **fields)
        assert response.status_code == 422, (fields, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert field in [e["field"] for e in response.json()["errors"]], response.json()


def failed_check(monitor_id: str, tenant: str, seconds_ago: int) -> Envelope:
    at = utcnow() - timedelta(seconds=seconds_ago)
    result = CheckCompleted(
        check_id=uuid.uuid4(),
        monitor_id=uuid.UUID(monitor_id),
        region="default",
        scheduled_at=at,
        started_at=at,
        finished_at=at + timedelta(milliseconds=20),
        outcome=Outcome.DOWN,
        latency_ms=20.0,
        error_kind="connect",
        error_message="connection refused",
    )
    return Envelope.wrap(result, producer="pinger.probe", tenant=tenant)


async def test_failures_in_an_active_cron_window_put_the_monitor_in_maintenance_only(
    pinger: tuple[httpx.AsyncClient, list[Component], InProcessBus],
) -> None:
    client, parts, bus = pinger
    collector = Collector(bus, ["incident.*", "monitor.status_changed"], name="test.cron")
    ids = []
    for name in ("in maintenance", "not in maintenance"):
        created = await client.post(
            "/api/v1/monitors", json={"name": name, "target": "https://example.com/"}
        )
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    covered, uncovered = ids
    active = await create_window(
        client,
        cron=daily_at(utcnow() - timedelta(minutes=1)),
        duration_minutes=60,
        monitor_ids=[covered],
    )
    inactive = await create_window(
        client,
        cron=daily_at(utcnow() + timedelta(hours=12)),
        duration_minutes=60,
        monitor_ids=[uncovered],
    )
    assert active.status_code == inactive.status_code == 201

    (db,) = [part for part in parts if isinstance(part, PingerDatabase)]
    async with db.sessions() as session:
        tenant = (
            await session.execute(
                select(monitors.c.tenant).where(monitors.c.id == uuid.UUID(covered))
            )
        ).scalar_one()
    await bus.publish(
        [failed_check(monitor_id, tenant, ago) for ago in (3, 2, 1) for monitor_id in ids]
    )

    async def status(monitor_id: str) -> str:
        return str((await client.get(f"/api/v1/monitors/{monitor_id}")).json()["status"])

    async def results_applied(monitor_id: str) -> bool:
        page = (await client.get(f"/api/v1/monitors/{monitor_id}/results")).json()
        return len(page["items"]) == 3

    def covered_changes() -> list[str]:
        return [
            e.payload["current"]
            for e in collector.of_type("monitor.status_changed")
            if e.payload["monitor_id"] == covered
        ]

    await eventually(lambda: results_applied(covered), timeout=10)
    await eventually(lambda: results_applied(uncovered), timeout=10)
    assert await status(covered) == "maintenance"
    assert await status(uncovered) == "down"
    # The uncovered monitor's incident proves that events flow; the covered one opens none.
    opened = await eventually(lambda: collector.of_type("incident.opened"), timeout=10)
    await eventually(covered_changes, timeout=10)
    assert [e.payload["monitor_id"] for e in opened] == [uncovered]
    assert covered_changes() == ["maintenance"]
