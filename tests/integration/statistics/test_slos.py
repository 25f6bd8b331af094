"""SLOs over the story of test_statistics: budgets through the API, and one
slo.burn_rate_exceeded per episode published through the outbox."""

from __future__ import annotations

import pytest

from tests.integration.statistics.conftest import Harness
from tests.integration.statistics.story import (
    FOREIGN,
    NOV10,
    SHOP,
    H,
    M,
    capture_slo_events,
    everything,
    feed,
    the_one_burn_event,
)

SLOS = "/api/v1/stats/slos"


async def test_an_outage_spends_the_budget_and_emits_one_burn_rate_event(stats: Harness) -> None:
    received = capture_slo_events(stats, "test.slo")
    await feed(stats, everything())
    stats.clock.now = NOV10 + 3 * H + 20 * M  # 20 minutes into the second outage

    response = await stats.client.post(
        SLOS, json={"name": "shop 99%", "monitor_id": str(SHOP), "objective": 0.99}
    )
    assert response.status_code == 201, response.text
    slo = response.json()
    # 30 days back reach 9 Nov 00:00: up 6 h + 3 h + 15 h, down 60 min + 20 min, 2 h maintenance
    assert slo["uptime"] == pytest.approx(1440 / 1520)
    assert slo["error_budget_consumed"] == pytest.approx((80 / 1520) / 0.01)
    assert slo["burn_rates"] == pytest.approx(
        {"5m": 100.0, "30m": (20 / 30) / 0.01, "1h": (20 / 60) / 0.01, "6h": (20 / 360) / 0.01}
    )
    assert slo["alerting_since"] is None

    assert await stats.service.evaluate_slos() == 1
    assert await stats.service.evaluate_slos() == 0  # same episode: once
    event = await the_one_burn_event(received)
    assert str(event.slo_id) == slo["slo_id"]
    assert (event.long_window_seconds, event.short_window_seconds) == (3600, 300)
    assert event.burn_rate_long == pytest.approx(100 / 3)
    assert event.threshold == 14.4

    detail = (await stats.client.get(f"{SLOS}/{slo['slo_id']}")).json()
    assert detail["alerting_since"].startswith("2026-11-10T03:20:00")
    stats.clock.now = NOV10 + 5 * H  # recovered at 03:30: no window burns too fast any more
    assert await stats.service.evaluate_slos() == 0
    assert (await stats.client.get(f"{SLOS}/{slo['slo_id']}")).json()["alerting_since"] is None


async def test_slos_are_created_changed_listed_and_deleted_per_workspace(stats: Harness) -> None:
    await feed(stats, everything())
    tagged = await stats.client.post(SLOS, json={"name": "web", "tag": "web", "objective": 0.9})
    assert tagged.status_code == 201
    assert tagged.json()["uptime"] is not None  # the tag covers "shop"
    single = await stats.client.post(
        SLOS, json={"name": "shop", "monitor_id": str(SHOP), "objective": 0.999, "window_days": 7}
    )
    slo_id = single.json()["slo_id"]

    for bad in (
        {"name": "both", "monitor_id": str(SHOP), "tag": "web", "objective": 0.9},
        {"name": "neither", "objective": 0.9},
        {"name": "percent", "tag": "web", "objective": 99.9},
        {"name": "theirs", "monitor_id": str(FOREIGN), "objective": 0.9},
        {"name": "extra", "tag": "web", "objective": 0.9, "tenant": "globex"},
    ):
        response = await stats.client.post(SLOS, json=bad)
        assert response.status_code == 422, bad
        assert response.headers["content-type"] == "application/problem+json"

    first = (await stats.client.get(SLOS, params={"limit": 1})).json()
    second = await stats.client.get(SLOS, params={"limit": 1, "cursor": first["next_cursor"]})
    names = [first["items"][0]["name"], second.json()["items"][0]["name"]]
    assert sorted(names) == ["shop", "web"]
    assert second.json()["next_cursor"] is None

    assert (await stats.outsider.get(f"{SLOS}/{slo_id}")).status_code == 404
    assert (await stats.outsider.get(SLOS)).json()["items"] == []
    assert (await stats.outsider.delete(f"{SLOS}/{slo_id}")).status_code == 404

    changed = await stats.client.patch(f"{SLOS}/{slo_id}", json={"objective": 0.95})
    assert changed.json()["objective"] == 0.95
    assert (await stats.client.delete(f"{SLOS}/{slo_id}")).status_code == 204
    assert (await stats.client.get(f"{SLOS}/{slo_id}")).status_code == 404
