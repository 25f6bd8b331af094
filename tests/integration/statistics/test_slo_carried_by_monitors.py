"""SLOs that monitors carry in their settings, on SQLite and PostgreSQL: the monitor.* events keep
one SLO row per monitor in step (replays and late events change nothing), the SLO API lists it
and refuses to change it, and its burn rate is evaluated like any other SLO's."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest

from pingtower.common.events import (
    Envelope,
    MonitorCreated,
    MonitorDeleted,
    MonitorUpdated,
    SloSetting,
)
from pingtower.statistics.store.monitor_slos import monitor_slo_id
from pingtower.statistics.store.tables import slos
from tests.integration.statistics.conftest import Harness
from tests.integration.statistics.story import (
    NOV9,
    NOV10,
    SHOP,
    H,
    M,
    capture_slo_events,
    count,
    everything,
    feed,
    the_one_burn_event,
    wrap,
)

SLOS = "/api/v1/stats/slos"
API = uuid.UUID("00000000-0000-4000-8000-0000000000b1")


def definition(
    kind: type[MonitorCreated] | type[MonitorUpdated],
    at: datetime,
    *,
    name: str = "api",
    slo: SloSetting | None = None,
    monitor_id: uuid.UUID = API,
) -> Envelope:
    event = kind(
        monitor_id=monitor_id,
        name=name,
        type="http",
        target="https://api.example/",
        interval_seconds=60,
        slo=slo,
    )
    return wrap(event, at=at)


def republished(envelope: Envelope) -> Envelope:
    """The same fact in a new message (a new id, so the inbox does not catch it)."""
    return envelope.model_copy(update={"id": uuid.uuid4()})


async def listed(stats: Harness) -> list[dict[str, Any]]:
    response = await stats.client.get(SLOS)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_a_monitor_with_an_slo_has_it_listed_with_the_monitors_name(stats: Harness) -> None:
    await feed(stats, [definition(MonitorCreated, NOV9, slo=SloSetting(objective=0.995))])
    (slo,) = await listed(stats)
    assert slo["slo_id"] == str(monitor_slo_id(API))
    assert (slo["name"], slo["monitor_id"], slo["tag"]) == ("api", str(API), None)
    assert (slo["objective"], slo["window_days"]) == (0.995, 30)
    assert slo["created_at"].startswith("2026-11-09T00:00:00")

    renamed = definition(
        MonitorUpdated, NOV9 + H, name="public api", slo=SloSetting(objective=0.99, window_days=7)
    )
    await feed(stats, [renamed])
    (slo,) = await listed(stats)
    assert (slo["name"], slo["objective"], slo["window_days"]) == ("public api", 0.99, 7)
    assert slo["created_at"].startswith("2026-11-09T00:00:00"), "the same SLO, changed"


async def test_replays_and_late_definitions_leave_the_newest_definitions_slo(
    stats: Harness,
) -> None:
    created = definition(MonitorCreated, NOV9, slo=SloSetting(objective=0.9))
    tightened = definition(MonitorUpdated, NOV9 + H, slo=SloSetting(objective=0.99))
    # The update arrives first, the creation after it: the older one loses.
    await feed(stats, [tightened])
    await feed(stats, [created])
    assert [s["objective"] for s in await listed(stats)] == [0.99]
    for again in (tightened, republished(tightened), republished(created)):
        await feed(stats, [again])
    assert [s["objective"] for s in await listed(stats)] == [0.99]

    dropped = definition(MonitorUpdated, NOV9 + 3 * H, slo=None)
    late = definition(MonitorUpdated, NOV9 + 2 * H, slo=SloSetting(objective=0.95))
    await feed(stats, [dropped])
    assert await listed(stats) == []
    await feed(stats, [late, republished(tightened)])
    assert await listed(stats) == [], "an update older than the removal does not bring it back"

    restored = definition(MonitorUpdated, NOV9 + 4 * H, slo=SloSetting(objective=0.97))
    deleted = wrap(MonitorDeleted(monitor_id=API), at=NOV9 + 5 * H)
    # One batch, out of order: applied by occurred_at.
    await feed(stats, [deleted, restored])
    assert await listed(stats) == []
    await feed(stats, [republished(restored), republished(created)])
    assert await listed(stats) == []
    assert await count(stats, slos) == 0


async def test_another_workspaces_event_cannot_touch_the_slo(stats: Harness) -> None:
    await feed(stats, [definition(MonitorCreated, NOV9, slo=SloSetting(objective=0.9))])
    hijack = MonitorUpdated(
        monitor_id=API, name="mine", type="http", target="x", interval_seconds=60, slo=None
    )
    await feed(stats, [wrap(hijack, tenant="globex", at=NOV9 + H)])
    assert [(s["name"], s["objective"]) for s in await listed(stats)] == [("api", 0.9)]
    assert (await stats.outsider.get(SLOS)).json()["items"] == []


async def test_the_slo_api_refuses_to_change_a_monitors_slo_and_names_the_monitor(
    stats: Harness,
) -> None:
    await feed(stats, [definition(MonitorCreated, NOV9, slo=SloSetting(objective=0.9))])
    url = f"{SLOS}/{monitor_slo_id(API)}"
    for response in (
        await stats.client.patch(url, json={"objective": 0.5}),
        await stats.client.delete(url),
    ):
        assert response.status_code == 409, response.text
        assert response.headers["content-type"] == "application/problem+json"
        detail = response.json()["detail"]
        assert "managed by the settings of monitor 'api'" in detail
        assert str(API) in detail
    assert [s["objective"] for s in await listed(stats)] == [0.9]
    assert (await stats.outsider.delete(url)).status_code == 404

    # An SLO made through this API for the same monitor stays the user's to change.
    own = await stats.client.post(
        SLOS, json={"name": "api, strict", "monitor_id": str(API), "objective": 0.999}
    )
    assert own.status_code == 201, own.text
    own_url = f"{SLOS}/{own.json()['slo_id']}"
    assert (await stats.client.patch(own_url, json={"objective": 0.99})).status_code == 200
    assert (await stats.client.delete(own_url)).status_code == 204


async def test_a_monitors_slo_burns_and_emits_slo_burn_rate_exceeded(stats: Harness) -> None:
    received = capture_slo_events(stats, "test.monitor-slo")
    with_slo = definition(
        MonitorUpdated, NOV9 + M, name="shop", slo=SloSetting(objective=0.99), monitor_id=SHOP
    )
    await feed(stats, [*everything(), with_slo])
    stats.clock.now = NOV10 + 3 * H + 20 * M  # 20 minutes into the second outage

    slo = (await stats.client.get(f"{SLOS}/{monitor_slo_id(SHOP)}")).json()
    # The figures of test_slos' SLO made by hand for the same monitor and objective.
    assert slo["uptime"] == pytest.approx(1440 / 1520)
    assert slo["burn_rates"]["5m"] == pytest.approx(100.0)

    assert await stats.service.evaluate_slos() == 1
    assert await stats.service.evaluate_slos() == 0
    event = await the_one_burn_event(received)
    assert (event.slo_id, event.monitor_id, event.objective) == (monitor_slo_id(SHOP), SHOP, 0.99)
    assert event.burn_rate_long == pytest.approx(100 / 3)
