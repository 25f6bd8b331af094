"""Heartbeat monitors end to end in the embedded mode: pings through the Healthchecks-style
URLs, silence noticed by the scheduler, status moved by the evaluator."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.settings import Settings
from tests.integration.pinger.harness import eventually, running_pinger


@pytest.fixture
async def client(sqlite_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        pinger_database_url=sqlite_url, min_interval_seconds=1, outbox_poll_seconds=0.05
    )
    roles = ["pinger-api", "scheduler", "evaluator"]
    async with running_pinger(settings, InProcessBus(), roles) as (client, _):
        yield client


async def create_heartbeat(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {
        "name": "nightly backup",
        "type": "heartbeat",
        "interval_seconds": 1,
        "settings": {"grace_seconds": 1},
        **fields,
    }
    response = await client.post("/api/v1/monitors", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def monitor(client: httpx.AsyncClient, monitor_id: str) -> dict[str, Any]:
    return dict((await client.get(f"/api/v1/monitors/{monitor_id}")).json())


async def test_pings_keep_a_heartbeat_up_and_silence_takes_it_down(
    client: httpx.AsyncClient,
) -> None:
    created = await create_heartbeat(client)
    assert created["failures_before_down"] == 1
    assert created["target"] == "push"
    ping_url = created["ping_url"]
    assert ping_url.startswith("/ping/")

    async def status_is(expected: str) -> bool:
        return bool((await monitor(client, created["id"]))["status"] == expected)

    response = await client.get(ping_url)
    assert response.status_code == 200
    assert response.text == "OK"
    await eventually(lambda: status_is("up"), timeout=5)
    await eventually(lambda: status_is("down"), timeout=8)
    down = await monitor(client, created["id"])
    assert down["last_result"]["error_kind"] == "heartbeat_missed"
    await client.post(ping_url)
    await eventually(lambda: status_is("up"), timeout=5)


async def test_a_failure_ping_takes_it_down_with_the_body_as_message(
    client: httpx.AsyncClient,
) -> None:
    created = await create_heartbeat(client, interval_seconds=60)
    ping_url = created["ping_url"]

    async def last_result() -> dict[str, Any] | None:
        return (await monitor(client, created["id"]))["last_result"]  # type: ignore[no-any-return]

    await client.post(f"{ping_url}/fail", content=b"disk full")
    result = await eventually(last_result, timeout=5)
    assert result["outcome"] == "down"
    assert result["error_kind"] == "heartbeat_fail"
    assert result["error_message"] == "disk full"
    await client.get(f"{ping_url}/start")
    await client.get(f"{ping_url}/0")

    async def recovered() -> bool:
        found = await last_result()
        return found is not None and found["outcome"] == "up"

    await eventually(recovered, timeout=5)
    run = await last_result()
    assert run is not None
    assert run["latency_ms"] is not None  # the run time, from /start to the exit status
    await client.get(f"{ping_url}/3")

    async def exited_badly() -> bool:
        found = await last_result()
        return found is not None and found["error_kind"] == "exit_status"

    await eventually(exited_badly, timeout=5)
    failed = await last_result()
    assert failed is not None
    assert failed["error_message"] == "the job exited with status 3"


async def test_a_job_that_started_and_did_not_finish_goes_down(
    client: httpx.AsyncClient,
) -> None:
    created = await create_heartbeat(client, interval_seconds=60)
    await client.get(f"{created['ping_url']}/start")

    async def too_long() -> bool:
        result = (await monitor(client, created["id"]))["last_result"]
        return result is not None and result["error_kind"] == "heartbeat_run_too_long"

    await eventually(too_long, timeout=6)


async def test_unknown_ping_keys_are_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/ping/{uuid.uuid4()}")
    assert response.status_code == 404
    bad_status = await client.get(f"/ping/{uuid.uuid4()}/999")
    assert bad_status.status_code == 404


async def test_check_now_is_refused_for_a_heartbeat(client: httpx.AsyncClient) -> None:
    created = await create_heartbeat(client)
    response = await client.post(f"/api/v1/monitors/{created['id']}/check-now")
    assert response.status_code == 409
