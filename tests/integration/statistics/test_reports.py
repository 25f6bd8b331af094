"""SLA report (JSON and CSV), trends against the previous period, and public badges, over the
story in story.py ("now" is 10 Nov 12:00)."""

from __future__ import annotations

import csv
import io
import itertools
import uuid
from datetime import timedelta

import httpx
import pytest
from fastapi import Request
from prometheus_client.parser import text_string_to_metric_families

from pingtower.common.events import Outcome
from pingtower.common.runtime import build_app
from pingtower.common.security import Authenticator, Principal
from pingtower.statistics.domain.histogram import Histogram
from tests.integration.statistics.conftest import Harness
from tests.integration.statistics.story import (
    DB,
    GONE,
    NOV9,
    NOV10,
    SHOP,
    H,
    check,
    created,
    everything,
    feed,
    get,
    wrap,
)

SLOW = uuid.UUID("00000000-0000-4000-8000-000000000005")


def p95_of(values: list[float]) -> float:
    histogram = Histogram()
    histogram.extend(values)
    p95 = histogram.quantile(0.95)
    assert p95 is not None
    return p95


async def test_sla_report_per_monitor_and_per_tag(stats: Harness) -> None:
    await feed(stats, everything())
    period = {"from": NOV9.isoformat(), "to": (NOV10 + 12 * H).isoformat()}
    report = await get(stats, "/reports/sla", **period)
    rows = {(row["kind"], row["key"]): row for row in report["rows"]}
    assert set(rows) == {
        ("monitor", str(SHOP)),
        ("monitor", str(DB)),
        ("tag", "web"),
        ("tag", "db"),
    }
    shop = rows[("monitor", str(SHOP))]
    assert shop["uptime"] == pytest.approx(32.5 / 34)
    assert (shop["up_seconds"], shop["downtime_seconds"]) == (32.5 * 3600, 1.5 * 3600)
    assert shop["excluded_seconds"] == 2 * 3600
    assert (shop["checks"], shop["check_success_ratio"]) == (60, pytest.approx(58 / 60))
    assert (shop["incident_count"], shop["mttr_seconds"]) == (2, 45 * 60)
    assert shop["p95_ms"] == pytest.approx(p95_of([float(v) for v in range(1, 61)]))
    db = rows[("monitor", str(DB))]
    assert (db["uptime"], db["downtime_seconds"], db["checks"]) == (0.0, 3600, 0)
    assert rows[("tag", "web")] == {**shop, "kind": "tag", "key": "web", "name": "web"}

    only_db = await get(stats, "/reports/sla", tag="db", **period)
    assert [(row["kind"], row["name"]) for row in only_db["rows"]] == [
        ("monitor", "db"),
        ("tag", "db"),
    ]

    response = await stats.client.get(
        "/api/v1/stats/reports/sla", params={**period, "format": "csv"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "sla-20261109-20261110.csv" in response.headers["content-disposition"]
    lines = list(csv.DictReader(io.StringIO(response.text)))
    assert len(lines) == 4
    by_key = {line["key"]: line for line in lines}
    assert float(by_key[str(SHOP)]["uptime"]) == pytest.approx(32.5 / 34)
    assert by_key[str(SHOP)]["start"].startswith("2026-11-09T00:00:00")
    assert by_key["db"]["kind"] == "tag"


async def test_sla_report_for_a_calendar_month_and_a_bad_one(stats: Harness) -> None:
    await feed(stats, everything())
    october = await get(stats, "/reports/sla", month="2026-10")
    assert october["start"].startswith("2026-10-01")
    assert all(row["uptime"] is None for row in october["rows"])  # nothing known then
    response = await stats.client.get("/api/v1/stats/reports/sla", params={"month": "10/2026"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "month"


async def test_trends_compare_with_the_previous_period(stats: Harness) -> None:
    await feed(stats, everything())
    trends = await get(stats, f"/monitors/{SHOP}/trends", window="24h")
    assert trends["previous_start"].startswith("2026-11-08T12:00:00")
    # now [9 Nov 12:00, 10 Nov 12:00): 23.5 h up of 24; before [8 Nov 12:00, 9 Nov 12:00):
    # 9 h up, 1 h down, maintenance left out (nothing known before 9 Nov 00:00)
    assert trends["uptime"]["current"] == pytest.approx(23.5 / 24)
    assert trends["uptime"]["previous"] == pytest.approx(0.9)
    assert trends["uptime"]["change"] == pytest.approx(23.5 / 24 - 0.9)
    assert (trends["incident_count"]["current"], trends["incident_count"]["previous"]) == (1, 1)
    assert trends["mttr_seconds"]["change"] == -30 * 60
    assert trends["p95_ms"]["previous"] is None
    assert trends["p95_ms"]["change"] is None
    assert trends["latency_growing"] is False


async def test_a_steady_latency_rise_is_flagged(stats: Harness) -> None:
    events = [wrap(created(SLOW, "slow"))]
    for day in range(7):  # 3..9 Nov, p95 rising 10% a day
        start = NOV10 - (7 - day) * timedelta(days=1)
        for minute in range(20):
            result = check(minute, 100.0 * 1.1**day + minute, monitor_id=SLOW)
            shifted = result.model_copy(
                update={
                    "check_id": uuid.uuid5(SLOW, f"{day}-{minute}"),
                    "finished_at": start + timedelta(hours=8, minutes=minute),
                    "outcome": Outcome.UP,
                }
            )
            events.append(wrap(shifted))
    await feed(stats, events)
    trends = await get(stats, f"/monitors/{SLOW}/trends", window="7d")
    daily = trends["daily_p95_ms"]
    assert len(daily) == 7
    assert all(later > earlier for earlier, later in itertools.pairwise(daily))
    assert trends["latency_growing"] is True


class Anonymous(Authenticator):
    async def authenticate(self, request: Request) -> Principal | None:
        return None


async def test_badges_are_public_for_public_monitors_only(stats: Harness) -> None:
    await feed(stats, everything())
    app = build_app("statistics", [stats.service], stats.bus, Anonymous())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://stats"
    ) as anonymous:
        assert (await anonymous.get("/api/v1/stats/overview")).status_code == 401
        status = await anonymous.get(f"/api/v1/stats/badges/{SHOP}/status.svg")
        assert status.status_code == 200
        assert status.headers["content-type"].startswith("image/svg+xml")
        assert "max-age" in status.headers["cache-control"]
        assert "<title>status: up</title>" in status.text
        uptime = await anonymous.get(
            f"/api/v1/stats/badges/{SHOP}/uptime.svg", params={"window": "24h"}
        )
        assert "<title>uptime 24h: 97.92%</title>" in uptime.text
        latency = await anonymous.get(f"/api/v1/stats/badges/{SHOP}/response-time.svg")
        expected = p95_of([float(v) for v in range(1, 61)])
        assert f"<title>p95 24h: {expected:.0f} ms</title>" in latency.text
        for hidden in (DB, GONE, uuid.uuid4()):
            response = await anonymous.get(f"/api/v1/stats/badges/{hidden}/status.svg")
            assert response.status_code == 404
        bad = await anonymous.get(f"/api/v1/stats/badges/{SHOP}/uptime.svg?window=13x")
        assert bad.status_code == 422


async def test_prometheus_exports_per_monitor_gauges(stats: Harness) -> None:
    await feed(stats, everything())
    assert await stats.service.refresh_metrics() == 3  # shop, db, theirs; not the deleted one
    text = (await stats.client.get("/metrics")).text
    samples = {
        (sample.name, sample.labels["monitor_id"], sample.labels.get("status")): sample.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("pingtower_statistics_monitor_")
        for sample in family.samples
    }
    shop, db = str(SHOP), str(DB)
    assert samples[("pingtower_statistics_monitor_up", shop, None)] == 1.0
    assert samples[("pingtower_statistics_monitor_status", shop, "up")] == 1.0
    assert samples[("pingtower_statistics_monitor_status", shop, "down")] == 0.0
    assert samples[("pingtower_statistics_monitor_last_latency_ms", shop, None)] == 60.0
    assert samples[("pingtower_statistics_monitor_uptime_24h", shop, None)] == pytest.approx(
        23.5 / 24
    )
    assert samples[("pingtower_statistics_monitor_up", db, None)] == 0.0
    assert samples[("pingtower_statistics_monitor_status", db, "down")] == 1.0
    assert not [key for key in samples if key[1] == str(GONE)]
