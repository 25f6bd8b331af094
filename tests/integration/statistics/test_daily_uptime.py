"""The logged-in daily uptime of one monitor (the detail page's 90-day bars), on SQLite and
PostgreSQL, over the story in story.py ("now" is 10 Nov 12:00)."""

from __future__ import annotations

import pytest

from pingtower.common.events import Status
from tests.integration.statistics.conftest import Harness
from tests.integration.statistics.story import (
    DB,
    FOREIGN,
    NOV10,
    SHOP,
    H,
    change,
    created,
    feed,
    shop_incidents,
    shop_timeline,
    wrap,
)

PROBLEM = "application/problem+json"


async def feed_story(stats: Harness) -> None:
    await feed(
        stats,
        [
            wrap(created(SHOP, "shop", ["web"])),  # private: these figures need no public page
            wrap(created(DB, "db", ["db"])),
            change(DB, NOV10 + 11 * H, Status.UP, Status.DOWN),
            wrap(created(FOREIGN, "theirs"), tenant="globex"),
            *shop_timeline(),
            *shop_incidents(),
        ],
    )


async def test_each_day_is_its_time_weighted_uptime(stats: Harness) -> None:
    await feed_story(stats)
    response = await stats.client.get(f"/api/v1/stats/monitors/{SHOP}/daily")
    assert response.status_code == 200, response.text
    body = response.json()
    days = body["days"]
    assert len(days) == 90
    assert (days[0]["date"], days[-1]["date"]) == ("2026-08-13", "2026-11-10")
    # 9 Nov: up 0-6, down 6-7, up 7-10, maintenance 10-12 (left out), up 12-24
    assert days[-2] == {"date": "2026-11-09", "uptime": 21 / 22, "downtime_seconds": 3600.0}
    # 10 Nov until now (12:00): down 03:00-03:30
    assert days[-1] == {"date": "2026-11-10", "uptime": 23 / 24, "downtime_seconds": 1800.0}
    assert all(day["uptime"] is None for day in days[:-2]), "nothing known before 9 Nov"
    assert body["uptime"] == pytest.approx(32.5 / 34)
    assert (body["start"], body["end"]) == ("2026-08-13T00:00:00Z", "2026-11-10T12:00:00Z")

    # the same figure as the uptime endpoint over that day
    uptime = await stats.client.get(
        f"/api/v1/stats/monitors/{SHOP}/uptime",
        params={"from": "2026-11-09T00:00:00Z", "to": "2026-11-10T00:00:00Z"},
    )
    assert uptime.json()["uptime"] == days[-2]["uptime"]

    # fewer days: the same figures, today still last
    short = (await stats.client.get(f"/api/v1/stats/monitors/{SHOP}/daily?days=2")).json()
    assert short["days"] == days[-2:]
    assert short["start"] == "2026-11-09T00:00:00Z"

    # db went down at 11:00 today; nothing known before
    db = (await stats.client.get(f"/api/v1/stats/monitors/{DB}/daily?days=3")).json()
    assert [d["uptime"] for d in db["days"]] == [None, None, 0.0]
    assert db["days"][-1]["downtime_seconds"] == 3600.0


async def test_another_workspaces_monitor_and_bad_days_are_refused(stats: Harness) -> None:
    await feed_story(stats)
    mine = await stats.outsider.get(f"/api/v1/stats/monitors/{SHOP}/daily")
    assert mine.status_code == 404
    assert mine.headers["content-type"].startswith(PROBLEM)
    theirs = await stats.client.get(f"/api/v1/stats/monitors/{FOREIGN}/daily")
    assert theirs.status_code == 404
    for days in ("0", "367", "many"):
        response = await stats.client.get(f"/api/v1/stats/monitors/{SHOP}/daily?days={days}")
        assert response.status_code == 422, days
        assert response.headers["content-type"].startswith(PROBLEM)
        assert "days" in response.text
