"""Statistics end to end on a real database: events in through the consumer's handler (and once
through the in-process bus), figures out through the HTTP API, compared with hand-computed ones.
The story is told in story.py; "now" is 10 Nov 12:00.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from pingtower.common.events import MonitorUpdated
from pingtower.statistics.domain.histogram import ALPHA
from pingtower.statistics.domain.rollups import Resolution
from pingtower.statistics.service import CONSUMER, Retention
from pingtower.statistics.store import tables
from tests.integration.statistics.conftest import Harness
from tests.integration.statistics.story import (
    FOREIGN,
    GONE,
    INCIDENT_1,
    INCIDENT_2,
    NOV9,
    NOV10,
    SHOP,
    H,
    M,
    check,
    count,
    created,
    everything,
    feed,
    get,
    shop_checks,
    shop_incidents,
    shop_timeline,
    wrap,
)


async def snapshot(stats: Harness) -> dict[str, Any]:
    """Everything the API says about the story, to compare before and after a replay."""
    return {
        "overview": (await get(stats, "/overview"))["items"],
        "uptime": await get(stats, f"/monitors/{SHOP}/uptime", **{"from": (NOV9).isoformat()}),
        "incidents": await get(stats, f"/monitors/{SHOP}/incidents"),
        "series": await get(
            stats,
            f"/monitors/{SHOP}/timeseries",
            step="1h",
            **{"from": (NOV10 + 8 * H).isoformat(), "to": (NOV10 + 10 * H).isoformat()},
        ),
        "rows": [
            await count(stats, t)
            for t in (tables.results, tables.rollups, tables.status_intervals, tables.incidents)
        ],
    }


async def test_uptime_of_a_window_that_cuts_an_incident_in_two(stats: Harness) -> None:
    envelopes = everything()
    random.Random(7).shuffle(envelopes)  # out of order, in small batches
    await feed(stats, envelopes, batch=9)

    # [9 Nov 06:30, 10 Nov 06:30): down 30 min + 30 min, up 3 h + 15 h + 3 h, 2 h maintenance.
    body = await get(
        stats,
        f"/monitors/{SHOP}/uptime",
        **{"from": (NOV9 + 6.5 * H).isoformat(), "to": (NOV10 + 6.5 * H).isoformat()},
    )
    assert body["up_seconds"] == 21 * 3600
    assert body["downtime_seconds"] == 3600
    assert body["excluded_seconds"] == 2 * 3600
    assert body["uptime"] == pytest.approx(21 / 22)
    assert body["incident_count"] == 2
    assert body["mttr_seconds"] == 45 * 60  # (60 min + 30 min) / 2
    assert body["mtbf_seconds"] == 20 * 3600  # 9 Nov 07:00 -> 10 Nov 03:00
    assert body["checks"] == 0  # the checks ran later


async def test_check_success_ratio_and_rolling_window(stats: Harness) -> None:
    await feed(stats, everything())
    body = await get(stats, f"/monitors/{SHOP}/uptime", window="24h")
    # [9 Nov 12:00, 10 Nov 12:00): up 15 h + 8.5 h, down 30 min
    assert body["uptime"] == pytest.approx(23.5 / 24)
    assert body["downtime_seconds"] == 1800
    assert (body["checks"], body["successful_checks"]) == (60, 58)
    assert body["check_success_ratio"] == pytest.approx(58 / 60)
    assert body["incident_count"] == 1


async def test_latency_timeseries_from_rollups(stats: Harness) -> None:
    envelopes = shop_checks()
    random.Random(3).shuffle(envelopes)
    await feed(stats, [wrap(created(SHOP, "shop")), *envelopes], batch=13)
    body = await get(
        stats,
        f"/monitors/{SHOP}/timeseries",
        step="30m",
        **{"from": (NOV10 + 8 * H).isoformat(), "to": (NOV10 + 10 * H).isoformat()},
    )
    assert body["resolution"] == "minute"
    assert body["relative_error"] == ALPHA
    first, second, third, fourth = body["points"]
    assert first["at"].startswith("2026-11-10T08:00:00")
    # minutes 0..29: latencies 1..30 ms, minutes 10 and 20 failed
    assert (first["checks"], first["up"], first["down"]) == (30, 28, 2)
    assert (first["min_ms"], first["max_ms"]) == (1.0, 30.0)
    assert first["mean_ms"] == pytest.approx(15.5)
    assert first["p50_ms"] == pytest.approx(15.0, rel=ALPHA)  # rank ⌊0.5·29⌋ = 14 → 15 ms
    assert first["p95_ms"] == pytest.approx(28.0, rel=ALPHA)  # rank ⌊0.95·29⌋ = 27 → 28 ms
    assert first["phases_ms"] == {"dns": 2.0, "connect": 4.0}
    assert (second["checks"], second["min_ms"], second["max_ms"]) == (30, 31.0, 60.0)
    assert third["checks"] == fourth["checks"] == 0
    assert third["p95_ms"] is None

    hourly = await get(
        stats,
        f"/monitors/{SHOP}/timeseries",
        step="1h",
        **{"from": (NOV10 + 8 * H).isoformat(), "to": (NOV10 + 9 * H).isoformat()},
    )
    (hour,) = hourly["points"]
    assert hourly["resolution"] == "hour"
    assert hour["checks"] == 60
    assert hour["p99_ms"] == pytest.approx(59.0, rel=ALPHA)  # rank ⌊0.99·59⌋ = 58 → 59 ms

    europe = await get(
        stats,
        f"/monitors/{SHOP}/timeseries",
        step="1h",
        region="eu",
        **{"from": (NOV10 + 8 * H).isoformat(), "to": (NOV10 + 9 * H).isoformat()},
    )
    (hour,) = europe["points"]
    # odd minutes ran in "eu": latencies 2, 4, ..., 60 ms
    assert (hour["checks"], hour["min_ms"], hour["max_ms"]) == (30, 2.0, 60.0)


async def test_late_results_land_in_their_bucket_like_in_order_ones(stats: Harness) -> None:
    envelopes = shop_checks()
    # the second half of the hour arrives first, the first half an "hour" later
    await feed(stats, [wrap(created(SHOP, "shop")), *envelopes[30:]])
    await feed(stats, envelopes[:30])
    body = await get(
        stats,
        f"/monitors/{SHOP}/timeseries",
        step="1m",
        **{"from": (NOV10 + 8 * H).isoformat(), "to": (NOV10 + 8 * H + 3 * M).isoformat()},
    )
    assert [p["checks"] for p in body["points"]] == [1, 1, 1]
    assert [p["max_ms"] for p in body["points"]] == [1.0, 2.0, 3.0]
    await stats.service.compact()
    async with stats.service.sessions() as session:
        day = (
            await session.execute(
                select(
                    func.sum(tables.rollups.c.up), func.sum(tables.rollups.c.latency_count)
                ).where(tables.rollups.c.resolution == "day")
            )
        ).one()
    assert tuple(day) == (58, 60)


async def test_a_replay_changes_nothing(stats: Harness) -> None:
    envelopes = everything()
    await feed(stats, envelopes)
    before = await snapshot(stats)
    await feed(stats, envelopes)  # the same messages again: the inbox drops them
    random.Random(1).shuffle(envelopes)
    await feed(stats, envelopes, batch=17)
    # the same facts under new message ids: each store step is idempotent too
    await feed(stats, [wrap(check(m, float(m + 1))) for m in range(60)])
    await feed(stats, shop_incidents())
    assert await snapshot(stats) == before


async def test_out_of_order_status_changes_build_the_right_timeline(stats: Harness) -> None:
    timeline = shop_timeline()
    await feed(stats, [wrap(created(SHOP, "shop"))])
    for envelope in [
        timeline[6],
        timeline[0],
        timeline[3],
        timeline[1],
        timeline[5],
        timeline[2],
        timeline[4],
    ]:
        await feed(stats, [envelope])
    async with stats.service.sessions() as session:
        rows = (
            await session.execute(
                select(
                    tables.status_intervals.c.start_at,
                    tables.status_intervals.c.end_at,
                    tables.status_intervals.c.status,
                ).order_by(tables.status_intervals.c.start_at)
            )
        ).all()
    starts = [row.start_at for row in rows]
    assert [row.end_at for row in rows] == [*starts[1:], None]
    assert [row.status for row in rows] == ["up", "down", "up", "maintenance", "up", "down", "up"]


async def test_overview_lists_the_workspace_monitors_with_their_figures(stats: Harness) -> None:
    await feed(stats, everything())
    items = (await get(stats, "/overview"))["items"]
    assert [item["name"] for item in items] == ["db", "shop"]  # not "gone", not globex's
    shop = items[1]
    assert shop["status"] == "up"
    assert shop["since"].startswith("2026-11-10T03:30:00")
    assert shop["uptime_24h"] == pytest.approx(23.5 / 24)
    # since 9 Nov 00:00: up 6+3+15+8.5 h, down 1.5 h, maintenance left out
    assert shop["uptime_30d"] == pytest.approx(32.5 / 34)
    assert shop["p95_24h_ms"] == pytest.approx(57.0, rel=ALPHA)  # rank ⌊0.95·59⌋ = 56
    assert shop["last_check_at"].startswith("2026-11-10T08:59:01")
    assert shop["last_latency_ms"] == 60.0
    db = items[0]
    assert (db["status"], db["uptime_24h"], db["p95_24h_ms"]) == ("down", 0.0, None)

    by_uptime = (await get(stats, "/overview", sort="uptime_24h", order="desc"))["items"]
    assert [item["name"] for item in by_uptime] == ["shop", "db"]
    assert [i["name"] for i in (await get(stats, "/overview", status="down"))["items"]] == ["db"]
    assert [i["name"] for i in (await get(stats, "/overview", tag="web"))["items"]] == ["shop"]
    assert [i["name"] for i in (await get(stats, "/overview", q="SH"))["items"]] == ["shop"]


async def test_monitor_definitions_apply_by_time_not_arrival(stats: Harness) -> None:
    renamed = MonitorUpdated(**{**created(SHOP, "shop").model_dump(), "name": "shop-v2"})
    await feed(stats, [wrap(renamed, at=NOV9 + 2 * H)])
    await feed(stats, [wrap(created(SHOP, "shop"), at=NOV9)])  # older, arrives later
    (item,) = (await get(stats, "/overview"))["items"]
    assert item["name"] == "shop-v2"


async def test_incidents_are_paginated_newest_first(stats: Harness) -> None:
    await feed(stats, everything())
    first = await get(stats, f"/monitors/{SHOP}/incidents", limit=1)
    assert [i["incident_id"] for i in first["items"]] == [str(INCIDENT_2)]
    assert first["items"][0]["duration_seconds"] == 1800
    assert first["items"][0]["cause"] == "http_status"
    second = await get(stats, f"/monitors/{SHOP}/incidents", limit=1, cursor=first["next_cursor"])
    assert [i["incident_id"] for i in second["items"]] == [str(INCIDENT_1)]
    assert second["items"][0]["region"] == "eu"
    assert second["next_cursor"] is None


async def test_another_workspace_sees_nothing(stats: Harness) -> None:
    await feed(stats, everything())
    for path in ("uptime", "incidents", "timeseries"):
        response = await stats.outsider.get(f"/api/v1/stats/monitors/{SHOP}/{path}")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
    theirs = (await stats.outsider.get("/api/v1/stats/overview")).json()["items"]
    assert [item["name"] for item in theirs] == ["theirs"]
    assert (await stats.client.get(f"/api/v1/stats/monitors/{FOREIGN}/uptime")).status_code == 404
    assert (await stats.client.get(f"/api/v1/stats/monitors/{GONE}/uptime")).status_code == 404


async def test_an_event_naming_another_workspaces_monitor_is_dropped(stats: Harness) -> None:
    await feed(stats, everything())
    await feed(stats, [wrap(check(5, 1.0, monitor_id=FOREIGN))])  # says acme, monitor is globex's
    assert await count(stats, tables.results) == 60


BAD_PARAMETERS = [
    ("uptime", {"window": "13x"}, "window"),
    ("uptime", {"from": "2026-11-01T00:00:00"}, "from"),  # no time zone
    ("uptime", {"month": "2026-13"}, "month"),
    ("timeseries", {"step": "5s"}, "step"),
    ("timeseries", {"step": "1m", "from": "2026-01-01T00:00:00Z"}, "step"),  # too many points
    ("incidents", {"cursor": "bogus"}, "cursor"),
    ("incidents", {"limit": "0"}, "limit"),
]


async def test_bad_parameters_answer_422_naming_the_field(stats: Harness) -> None:
    await feed(stats, [wrap(created(SHOP, "shop"))])
    for path, params, field in BAD_PARAMETERS:
        response = await stats.client.get(f"/api/v1/stats/monitors/{SHOP}/{path}", params=params)
        assert response.status_code == 422, (path, params)
        assert response.headers["content-type"] == "application/problem+json"
        assert field in [error["field"] for error in response.json()["errors"]], (path, params)


async def test_events_arrive_through_the_in_process_bus(stats: Harness) -> None:
    await stats.bus.publish(everything())
    for _ in range(200):  # bounded: at most ~10 s
        if stats.bus.pending(CONSUMER) == 0 and await count(stats, tables.results) == 60:
            break
        await asyncio.sleep(0.05)
    body = await get(stats, f"/monitors/{SHOP}/uptime", window="24h")
    assert body["checks"] == 60
    assert body["uptime"] == pytest.approx(23.5 / 24)
    assert stats.bus.dead_letters == []


async def test_pruning_drops_raw_results_and_old_rollups_by_retention(
    early_stats: Harness,
) -> None:
    stats = early_stats  # no background pruning racing the one under test
    await feed(stats, everything())
    stats.service.retention = Retention(
        raw=timedelta(days=1), minute=timedelta(days=1), hour=timedelta(days=3)
    )
    stats.clock.now = NOV10 + 8 * H + 30 * M + 1 * timedelta(days=1)
    removed = await stats.service.prune()
    # raw results before 9... the first 30 minutes of checks are older than a day; in batches of 7
    assert removed["raw"] == 30
    assert await count(stats, tables.results) == 30
    assert removed[Resolution.MINUTE.value] == 30
    assert removed[Resolution.HOUR.value] == 0
    stats.clock.now = NOV10 + timedelta(days=10)
    await stats.service.prune()
    assert await count(stats, tables.results) == 0
    async with stats.service.sessions() as session:
        kept = (await session.execute(select(tables.rollups.c.resolution).distinct())).scalars()
        assert set(kept) == {"day"}
    # the day rollups still answer
    body = await get(stats, f"/monitors/{SHOP}/uptime", **{"from": NOV10.isoformat()})
    assert body["checks"] == 60


async def test_overview_p95_covers_the_last_24_hours_across_midnight(stats: Harness) -> None:
    await feed(stats, everything())
    stats.clock.now = NOV10 + timedelta(days=1) + 6 * H  # window from 10 Nov 06:00: has 08:xx
    (_db, shop) = (await get(stats, "/overview"))["items"]
    assert shop["p95_24h_ms"] == pytest.approx(57.0, rel=ALPHA)
    stats.clock.now = NOV10 + timedelta(days=1) + 9 * H  # from 10 Nov 09:00: the checks left
    (_db, shop) = (await get(stats, "/overview"))["items"]
    assert shop["p95_24h_ms"] is None


async def test_overview_p95_comes_from_the_background_snapshot_while_it_is_fresh(
    stats: Harness,
) -> None:
    await feed(stats, everything())
    await stats.service.refresh_metrics()
    assert stats.service.latency.p95_24h[SHOP] == pytest.approx(57.0, rel=ALPHA)
    # sixty more checks in the same hour, all at 1 s: the live p95 jumps to 1,000 ms
    slow = [wrap(check(m, 1000.0).model_copy(update={"check_id": uuid.uuid4()})) for m in range(60)]
    await feed(stats, slow)
    (_db, shop) = (await get(stats, "/overview"))["items"]
    assert shop["p95_24h_ms"] == pytest.approx(57.0, rel=ALPHA)  # the snapshot's figure
    stats.clock.now += stats.service.latency.max_age + M  # the snapshot is now too old
    (_db, shop) = (await get(stats, "/overview"))["items"]
    assert shop["p95_24h_ms"] == pytest.approx(1000.0, rel=ALPHA)
