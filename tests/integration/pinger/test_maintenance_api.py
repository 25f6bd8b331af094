"""/api/v1/maintenance-windows on SQLite and PostgreSQL, and their effect on the evaluator."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from pingtower.common.events import utcnow
from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.settings import Settings
from tests.integration.pinger.conftest import MakeUrl
from tests.integration.pinger.harness import running_pinger

ONE_HOUR_AGO = (utcnow() - timedelta(hours=1)).isoformat()
IN_ONE_HOUR = (utcnow() + timedelta(hours=1)).isoformat()


@pytest.fixture
async def client(shared_db_url: MakeUrl) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(pinger_database_url=await shared_db_url())
    async with running_pinger(settings, InProcessBus(), ["pinger-api"]) as (client, _):
        yield client


async def create(client: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    body = {"name": "deploy", "kind": "once", "starts_at": ONE_HOUR_AGO, "ends_at": IN_ONE_HOUR}
    return await client.post("/api/v1/maintenance-windows", json={**body, **fields})


async def test_a_one_off_window_is_created_and_active(client: httpx.AsyncClient) -> None:
    response = await create(client)
    assert response.status_code == 201, response.text
    window = response.json()
    assert window["active_now"] is True
    assert window["monitor_ids"] == []
    fetched = await client.get(f"/api/v1/maintenance-windows/{window['id']}")
    assert fetched.json() == window


async def test_a_weekly_window_is_created(client: httpx.AsyncClient) -> None:
    monitor = await client.post(
        "/api/v1/monitors", json={"name": "m", "target": "https://example.com/"}
    )
    response = await create(
        client,
        kind="weekly",
        starts_at=None,
        ends_at=None,
        days=[6, 0, 6],
        start_time="02:00",
        duration_minutes=90,
        timezone="Europe/Berlin",
        monitor_ids=[monitor.json()["id"]],
    )
    assert response.status_code == 201, response.text
    assert response.json()["days"] == [0, 6]
    assert response.json()["start_time"] == "02:00"


async def test_window_validation_names_the_field(client: httpx.AsyncClient) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"ends_at": ONE_HOUR_AGO, "starts_at": IN_ONE_HOUR}, "ends_at"),
        ({"starts_at": None}, "starts_at"),
        ({"kind": "weekly", "days": [1], "start_time": "01:00"}, "duration_minutes"),
        (
            {"kind": "weekly", "days": [9], "start_time": "01:00", "duration_minutes": 5},
            "days",
        ),
        (
            {
                "kind": "weekly",
                "days": [1],
                "start_time": "01:00",
                "duration_minutes": 5,
                "timezone": "Nowhere/Else",
            },
            "timezone",
        ),
        ({"monitor_ids": [str(uuid.uuid4())]}, "monitor_ids.0"),
        ({"kind": "monthly"}, "kind"),
    ]
    for fields, field in cases:
        response = await create(client, **fields)
        assert response.status_code == 422, (fields, response.text)
        assert field in [e["field"] for e in response.json()["errors"]], response.json()


async def test_windows_are_scoped_by_workspace(client: httpx.AsyncClient) -> None:
    window = (await create(client)).json()
    url = f"/api/v1/maintenance-windows/{window['id']}"
    other = {"x-tenant": "globex"}
    assert (await client.get(url, headers=other)).status_code == 404
    assert (await client.delete(url, headers=other)).status_code == 404
    listed = await client.get("/api/v1/maintenance-windows", headers=other)
    assert listed.json()["items"] == []
    assert (await client.delete(url)).status_code == 204
    assert (await client.get(url)).status_code == 404
