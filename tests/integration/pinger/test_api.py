"""The monitors API on SQLite and PostgreSQL: validation, tenancy, filters, pagination, events."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from pingtower.common.events import Envelope, utcnow
from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.settings import Settings
from tests.integration.pinger.conftest import MakeUrl
from tests.integration.pinger.harness import Collector, eventually, running_pinger


class Api:
    def __init__(self, client: httpx.AsyncClient, bus: InProcessBus, collector: Collector):
        self.client = client
        self.bus = bus
        self.collector = collector

    def events(self, event_type: str, monitor_id: str) -> list[Envelope]:
        """Events about one monitor (the database may be shared with other tests)."""
        return [
            e for e in self.collector.of_type(event_type) if e.payload["monitor_id"] == monitor_id
        ]

    async def create(self, tenant: str = "acme", **fields: Any) -> dict[str, Any]:
        body = {"name": "Home page", "target": "https://example.com/", **fields}
        response = await self.client.post(
            "/api/v1/monitors", json=body, headers={"x-tenant": tenant}
        )
        assert response.status_code == 201, response.text
        return dict(response.json())


@pytest.fixture
async def api(shared_db_url: MakeUrl) -> AsyncIterator[Api]:
    db_url = await shared_db_url()
    bus = InProcessBus()
    collector = Collector(bus, ["monitor.*"])
    settings = Settings(
        pinger_database_url=db_url, min_interval_seconds=10, outbox_poll_seconds=0.05
    )
    async with running_pinger(settings, bus, ["pinger-api"]) as (client, _):
        yield Api(client, bus, collector)


async def test_create_monitor_applies_defaults_and_starts_unknown(api: Api) -> None:
    monitor = await api.create(tags=["prod", "web", "prod"])
    assert uuid.UUID(monitor["id"]).version == 4
    assert monitor["status"] == "unknown"
    assert monitor["interval_seconds"] == 60
    assert monitor["failures_before_down"] == 2
    assert monitor["successes_before_up"] == 1
    assert monitor["retry_interval_seconds"] == 20
    assert monitor["timeout_seconds"] == 10
    assert monitor["regions"] == ["default"]
    assert monitor["tags"] == ["prod", "web"]
    assert monitor["settings"]["expected_status"] == ["200-299"]
    assert monitor["last_result"] is None
    assert monitor["cron"] is None
    assert monitor["ping_url"] is None


async def test_create_monitor_publishes_monitor_created(api: Api) -> None:
    monitor = await api.create()
    created: list[Envelope] = await eventually(lambda: api.events("monitor.created", monitor["id"]))
    assert len(created) == 1
    assert created[0].tenant.endswith("-acme")


async def test_validation_errors_name_the_field(api: Api) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"interval_seconds": 5}, "interval_seconds"),
        ({"settings": {"expected_status": ["2xx"]}}, "settings.expected_status"),
        ({"settings": {"unknown": 1}}, "settings.unknown"),
        ({"target": "ftp://example.com"}, "target"),
        ({"type": "smoke-signal"}, "type"),
        ({"owner": "me"}, "owner"),
        ({"parent_id": str(uuid.uuid4())}, "parent_id"),
        ({"failure_quorum": 2}, "failure_quorum"),
        ({"cron": "every morning"}, "cron"),
        ({"cron": "0 3 * * *", "timezone": "Mars/Base"}, "timezone"),
        ({"regions": ["eu west"]}, "regions.0"),
    ]
    for fields, field in cases:
        body = {"name": "x", "target": "https://example.com/", **fields}
        response = await api.client.post("/api/v1/monitors", json=body)
        assert response.status_code == 422, (fields, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert field in [error["field"] for error in response.json()["errors"]], response.json()


async def test_another_workspace_cannot_see_or_change_a_monitor(api: Api) -> None:
    monitor = await api.create(tenant="acme")
    url = f"/api/v1/monitors/{monitor['id']}"
    other = {"x-tenant": "globex"}
    assert (await api.client.get(url, headers=other)).status_code == 404
    assert (await api.client.patch(url, json={"name": "x"}, headers=other)).status_code == 404
    assert (await api.client.delete(url, headers=other)).status_code == 404
    assert (await api.client.post(f"{url}/pause", headers=other)).status_code == 404
    assert (await api.client.get(f"{url}/results", headers=other)).status_code == 404
    listed = await api.client.get("/api/v1/monitors", headers=other)
    assert listed.json()["items"] == []
    assert (await api.client.get(url)).status_code == 200


async def test_a_viewer_cannot_create_monitors(api: Api) -> None:
    response = await api.client.post(
        "/api/v1/monitors",
        json={"name": "x", "target": "https://example.com/"},
        headers={"x-role": "viewer"},
    )
    assert response.status_code == 403


async def test_list_filters_by_tag_type_and_text(api: Api) -> None:
    await api.create(name="Shop", tags=["prod"], target="https://shop.example.com/")
    await api.create(name="Blog", tags=["staging"])
    await api.create(name="Database", type="tcp", target="db.example.com:5432", tags=["prod"])

    async def names(**params: str) -> list[str]:
        response = await api.client.get("/api/v1/monitors", params=params)
        assert response.status_code == 200, response.text
        return sorted(item["name"] for item in response.json()["items"])

    assert await names(tag="prod") == ["Database", "Shop"]
    assert await names(type="tcp") == ["Database"]
    assert await names(q="shop.example") == ["Shop"]
    assert await names(q="BLO") == ["Blog"]
    assert await names(status="unknown") == ["Blog", "Database", "Shop"]
    assert await names(status="down") == []
    assert await names(q="100%") == []


async def test_list_is_cursor_paginated(api: Api) -> None:
    created = [(await api.create(name=f"m{i}"))["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await api.client.get("/api/v1/monitors", params=params)).json()
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == created
    bad = await api.client.get("/api/v1/monitors", params={"cursor": "garbage"})
    assert bad.status_code == 400


async def test_update_monitor_validates_the_merged_monitor(api: Api) -> None:
    monitor = await api.create()
    url = f"/api/v1/monitors/{monitor['id']}"
    response = await api.client.patch(url, json={"name": "Renamed", "interval_seconds": 30})
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Renamed"
    assert response.json()["interval_seconds"] == 30
    too_short = await api.client.patch(url, json={"retry_interval_seconds": 31})
    assert too_short.status_code == 422
    assert too_short.json()["errors"][0]["field"] == "retry_interval_seconds"
    retyped = await api.client.patch(url, json={"type": "tcp", "target": "example.com:443"})
    assert retyped.status_code == 200, retyped.text
    assert retyped.json()["settings"] == {"send": None, "expect": None, "max_reply_bytes": 4096}
    await eventually(lambda: len(api.events("monitor.updated", monitor["id"])) == 2)
    updated = api.events("monitor.updated", monitor["id"])
    assert updated[-1].payload["name"] == "Renamed"


async def test_delete_monitor_hides_it_and_publishes_monitor_deleted(api: Api) -> None:
    monitor = await api.create()
    url = f"/api/v1/monitors/{monitor['id']}"
    assert (await api.client.delete(url)).status_code == 204
    assert (await api.client.get(url)).status_code == 404
    assert (await api.client.delete(url)).status_code == 404
    deleted = await eventually(lambda: api.events("monitor.deleted", monitor["id"]))
    assert deleted[0].payload == {"monitor_id": monitor["id"]}


async def test_pause_and_resume_change_the_status(api: Api) -> None:
    monitor = await api.create()
    url = f"/api/v1/monitors/{monitor['id']}"
    paused = (await api.client.post(f"{url}/pause")).json()
    assert paused["paused"] is True
    assert paused["status"] == "paused"
    resumed = (await api.client.post(f"{url}/resume")).json()
    assert resumed["paused"] is False
    assert resumed["status"] == "unknown"
    changes = await eventually(
        lambda: (
            len(api.collector.of_type("monitor.status_changed")) >= 2
            and api.collector.of_type("monitor.status_changed")
        )
    )
    assert [(c.payload["previous"], c.payload["current"]) for c in changes] == [
        ("unknown", "paused"),
        ("paused", "unknown"),
    ]


async def test_check_now_puts_a_job_on_each_region_queue(api: Api) -> None:
    monitor = await api.create(regions=["eu", "us"])
    jobs: dict[str, list[Envelope]] = {"eu": [], "us": []}
    for region in jobs:
        queue = api.bus._job_queue(region)
        before = queue.qsize()
        assert before == 0
    response = await api.client.post(f"/api/v1/monitors/{monitor['id']}/check-now")
    assert response.status_code == 202
    for region in jobs:
        queue = api.bus._job_queue(region)
        job = queue.get_nowait()
        assert job.type == "check.job"
        assert job.payload["monitor_id"] == monitor["id"]
        assert job.payload["region"] == region
        assert job.payload["deadline"] > utcnow().isoformat()


async def test_results_of_an_unknown_monitor_are_404(api: Api) -> None:
    response = await api.client.get(f"/api/v1/monitors/{uuid.uuid4()}/results")
    assert response.status_code == 404
    assert response.json()["title"] == "Not Found"


async def stored_settings(api: Api, monitor_id: str) -> dict[str, Any]:
    """The settings a probe receives: those of the job that check-now queues."""
    response = await api.client.post(f"/api/v1/monitors/{monitor_id}/check-now")
    assert response.status_code == 202, response.text
    job = api.bus._job_queue("default").get_nowait()
    return dict(job.payload["settings"])


async def test_secrets_are_write_only_and_kept_by_updates_that_omit_them(api: Api) -> None:
    monitor = await api.create(
        settings={
            "bearer_token": "s3cret",
            "headers": {"Cookie": "session=abc", "Accept": "text/html"},
        }
    )
    url = f"/api/v1/monitors/{monitor['id']}"
    for shown in (monitor, (await api.client.get(url)).json()):
        assert shown["settings"]["bearer_token"] == "<set>"
        assert shown["settings"]["headers"] == {"Cookie": "<set>", "Accept": "text/html"}
    listed = (await api.client.get("/api/v1/monitors", params={"q": "Home"})).json()["items"]
    assert "s3cret" not in str(listed)
    assert "session=abc" not in str(listed)

    renamed = await api.client.patch(url, json={"settings": {"expected_status": ["200"]}})
    assert renamed.status_code == 200, renamed.text
    given_back = await api.client.patch(url, json={"settings": renamed.json()["settings"]})
    assert given_back.status_code == 200, given_back.text
    kept = await stored_settings(api, monitor["id"])
    assert kept["bearer_token"] == "s3cret"
    assert kept["headers"] == {"Cookie": "session=abc", "Accept": "text/html"}
    assert kept["expected_status"] == ["200"]

    removed = await api.client.patch(url, json={"settings": {"bearer_token": None}})
    assert removed.json()["settings"]["bearer_token"] is None
    assert (await stored_settings(api, monitor["id"]))["bearer_token"] is None


async def test_a_masked_secret_with_nothing_stored_is_rejected_naming_the_field(api: Api) -> None:
    response = await api.client.post(
        "/api/v1/monitors",
        json={
            "name": "x",
            "target": "https://example.com/",
            "settings": {"basic_auth": {"username": "u", "password": "<set>"}},
        },
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "settings.basic_auth.password"
