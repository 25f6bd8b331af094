"""The whole Pinger in one process (all four roles) against a local target, in both modes: the
thin path from creating a monitor to incidents opening and resolving."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from pingtower.common.messaging.bus import Bus
from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.messaging.rabbitmq import RabbitMQBus
from pingtower.common.settings import Settings
from tests.integration.pinger.harness import Collector, eventually, running_pinger
from tests.integration.pinger.servers import http_target


async def status_of(client: httpx.AsyncClient, monitor_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/monitors/{monitor_id}")
    assert response.status_code == 200
    return dict(response.json())


@pytest.fixture(params=["embedded", "distributed"])
def mode(request: pytest.FixtureRequest) -> tuple[str, Bus]:
    """Embedded: SQLite and the in-process bus. Distributed: PostgreSQL and RabbitMQ."""
    if request.param == "embedded":
        return str(request.getfixturevalue("sqlite_url")), InProcessBus()
    url = str(request.getfixturevalue("pg_url"))
    broker = str(request.getfixturevalue("rabbitmq_url"))
    namespace = str(request.getfixturevalue("namespace"))
    return url, RabbitMQBus(broker, namespace=namespace)


async def test_monitor_goes_up_down_and_up_again_with_one_incident(mode: tuple[str, Bus]) -> None:
    database_url, bus = mode
    collector = Collector(
        bus, ["monitor.*", "incident.*", "check.completed"], name="test.downstream"
    )
    settings = Settings(
        pinger_database_url=database_url,
        min_interval_seconds=1,
        allow_private_targets=True,
        outbox_poll_seconds=0.05,
        probe_concurrency=4,
    )
    roles = ["pinger-api", "scheduler", "probe", "evaluator"]
    async with (
        http_target() as target,
        running_pinger(settings, bus, roles) as (client, _components),
    ):
        created = await client.post(
            "/api/v1/monitors",
            json={
                "name": "Local target",
                "target": f"{target.url}/ok",
                "interval_seconds": 1,
                "timeout_seconds": 0.5,
                "retry_interval_seconds": 1,
            },
        )
        assert created.status_code == 201, created.text
        monitor_id = created.json()["id"]

        async def has_status(expected: str) -> bool:
            return bool((await status_of(client, monitor_id))["status"] == expected)

        await eventually(lambda: has_status("up"), timeout=8)
        up = await status_of(client, monitor_id)
        assert up["last_result"]["outcome"] == "up"
        assert up["last_result"]["status_code"] == 200

        await target.stop()
        await eventually(lambda: has_status("down"), timeout=10)
        down = await status_of(client, monitor_id)
        assert down["incident_id"] is not None
        assert down["last_result"]["error_kind"] == "connect"

        await target.start()
        await eventually(lambda: has_status("up"), timeout=10)

        results = (await client.get(f"/api/v1/monitors/{monitor_id}/results")).json()
        outcomes = [item["outcome"] for item in results["items"]]
        assert "down" in outcomes
        assert outcomes[0] == "up"  # newest first

        await eventually(lambda: collector.of_type("incident.resolved"), timeout=5)

    changes = [
        (e.payload["previous"], e.payload["current"])
        for e in collector.of_type("monitor.status_changed")
    ]
    assert changes == [
        ("unknown", "up"),
        ("up", "pending"),
        ("pending", "down"),
        ("down", "up"),
    ]
    (opened,) = collector.of_type("incident.opened")
    (resolved,) = collector.of_type("incident.resolved")
    assert opened.payload["incident_id"] == resolved.payload["incident_id"]
    assert opened.payload["monitor_id"] == monitor_id
    assert opened.payload["cause"] == "connect"
    assert collector.of_type("monitor.created")[0].payload["monitor_id"] == monitor_id
    checks = collector.of_type("check.completed")
    assert all(c.payload["monitor_id"] == monitor_id for c in checks)
    assert len({c.payload["check_id"] for c in checks}) == len(checks)
