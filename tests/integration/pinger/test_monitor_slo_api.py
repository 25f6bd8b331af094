"""A monitor's optional `slo` setting through the monitors API on SQLite and PostgreSQL: stored,
shown, validated naming the field, replaced or removed by an update, and carried by every
monitor.created/updated event (the pause and resume ones too)."""

from __future__ import annotations

from typing import Any

from pingtower.common.events import Envelope, MonitorUpdated
from tests.integration.pinger.harness import eventually
from tests.integration.pinger.test_api import Api, api

__all__ = ["api"]  # the fixture, shared with test_api


async def updates(api: Api, monitor_id: str, count: int) -> list[Envelope]:
    found: list[Envelope] = await eventually(
        lambda: (
            len(api.events("monitor.updated", monitor_id)) >= count
            and api.events("monitor.updated", monitor_id)
        )
    )
    return found


async def test_a_monitor_carries_an_optional_slo_with_the_windows_default(api: Api) -> None:
    plain = await api.create()
    assert plain["slo"] is None
    monitor = await api.create(slo={"objective": 0.999})
    assert monitor["slo"] == {"objective": 0.999, "window_days": 30}
    shown = (await api.client.get(f"/api/v1/monitors/{monitor['id']}")).json()
    assert shown["slo"] == {"objective": 0.999, "window_days": 30}
    (created,) = await eventually(lambda: api.events("monitor.created", monitor["id"]))
    assert created.payload["slo"] == {"objective": 0.999, "window_days": 30}
    (plain_created,) = await eventually(lambda: api.events("monitor.created", plain["id"]))
    assert plain_created.payload["slo"] is None


async def test_slo_validation_errors_name_the_field(api: Api) -> None:
    cases: list[tuple[Any, str]] = [
        ({"objective": 99.9}, "slo.objective"),  # a percentage, not a fraction
        ({"objective": 0}, "slo.objective"),
        ({"objective": 1}, "slo.objective"),
        ({"objective": 0.99, "window_days": 0}, "slo.window_days"),
        ({"objective": 0.99, "window_days": 366}, "slo.window_days"),
        ({"window_days": 30}, "slo.objective"),
        ({"objective": 0.99, "target": 1}, "slo.target"),
        ("99.9%", "slo"),
    ]
    monitor = await api.create()
    for slo, field in cases:
        for response in (
            await api.client.post(
                "/api/v1/monitors",
                json={"name": "x", "target": "https://example.com/", "slo": slo},
            ),
            await api.client.patch(f"/api/v1/monitors/{monitor['id']}", json={"slo": slo}),
        ):
            assert response.status_code == 422, (slo, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            assert field in [e["field"] for e in response.json()["errors"]], response.json()


async def test_an_update_replaces_or_removes_the_slo_and_says_so_in_its_event(api: Api) -> None:
    monitor = await api.create(slo={"objective": 0.99, "window_days": 7})
    url = f"/api/v1/monitors/{monitor['id']}"

    renamed = await api.client.patch(url, json={"name": "Shop"})
    assert renamed.json()["slo"] == {"objective": 0.99, "window_days": 7}, "kept when omitted"
    changed = await api.client.patch(url, json={"slo": {"objective": 0.995}})
    assert changed.status_code == 200, changed.text
    assert changed.json()["slo"] == {"objective": 0.995, "window_days": 30}, "replaced whole"
    paused = await api.client.post(f"{url}/pause")
    assert paused.json()["slo"] == {"objective": 0.995, "window_days": 30}
    removed = await api.client.patch(url, json={"slo": None})
    assert removed.status_code == 200, removed.text
    assert removed.json()["slo"] is None
    assert (await api.client.get(url)).json()["slo"] is None

    events = await updates(api, monitor["id"], 4)
    carried = [MonitorUpdated.model_validate(e.payload).slo for e in events]
    assert [(s.objective, s.window_days) if s else None for s in carried] == [
        (0.99, 7),
        (0.995, 30),
        (0.995, 30),  # the pause's event carries the whole definition
        None,
    ]
