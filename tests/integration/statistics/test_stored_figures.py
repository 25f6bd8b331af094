"""Compaction keeps figures in finished hour and day cells (percentiles, the series point) and
the tails of the last finished day; the series and the overview read them. Every answer must
be the one computed from the histograms alone, also after a late result has made some of the
stored figures out of date."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update

from pingtower.common.events import CheckCompleted, Envelope, Outcome
from pingtower.statistics.domain.cell_figures import figures
from pingtower.statistics.domain.histogram import Histogram
from pingtower.statistics.domain.rollups import Resolution
from pingtower.statistics.domain.series import StoredCell
from pingtower.statistics.store import compaction, queries, tables
from pingtower.statistics.store.dialect import is_postgres
from pingtower.statistics.store.watermark import folded_until
from tests.integration.statistics.conftest import Harness
from tests.integration.statistics.story import DB, NOV10, SHOP, H, M, created, feed, wrap

NOV11 = NOV10 + 24 * H
NOW = NOV11 + 9 * H + 30 * M  # the overview's 24 hours: 10 Nov 09:00 to now, past midnight


def result(monitor_id: uuid.UUID, at: Any, i: int, region: str) -> Envelope:
    return wrap(
        CheckCompleted(
            check_id=uuid.uuid4(),
            monitor_id=monitor_id,
            region=region,
            scheduled_at=at - timedelta(seconds=2),
            started_at=at - timedelta(seconds=1),
            finished_at=at,
            outcome=Outcome.DOWN if i % 13 == 0 else Outcome.UP,
            latency_ms=None if i % 17 == 0 else 20.0 + (i * 37) % 400,
            error_kind="timeout" if i % 13 == 0 else None,
            phases_ms={"dns": 1.0 + i % 3, "connect": 3.5 + (i % 7) / 3},
        )
    )


def checks() -> list[Envelope]:
    """Every 10 minutes from 10 Nov 00:00 until now: "shop" from one region, "db" from two."""
    found = []
    for i in range(int((NOW - NOV10) / (10 * M))):
        at = NOV10 + i * 10 * M + timedelta(seconds=3)
        found.append(result(SHOP, at, i, "eu"))
        found.append(result(DB, at, i, "eu" if i % 2 else "us"))
    return found


async def answers(stats: Harness) -> list[bytes]:
    """The raw answers that read stored figures and tails (the overview without its p95
    snapshot, so from the stored histograms)."""
    found = []
    for monitor_id in (SHOP, DB):
        base = f"/api/v1/stats/monitors/{monitor_id}/timeseries"
        # from 3 hours before the first check: steps of no cell before the stored points
        for start, step in ((NOV10, "1h"), (NOV10, "1d"), (NOV10, "2h"), (NOV10 - 3 * H, "1h")):
            response = await stats.client.get(
                base, params={"from": start.isoformat(), "step": step}
            )
            assert response.status_code == 200, response.text
            found.append(response.content)
    response = await stats.client.get("/api/v1/stats/overview")
    assert response.status_code == 200, response.text
    found.append(response.content)
    return found


async def from_histograms_alone(stats: Harness) -> list[bytes]:
    """`answers` with every stored figure and tail out of the way, then put back as they were."""
    r = tables.rollups
    async with stats.service.sessions() as session, session.begin():
        kept = (
            await session.execute(
                select(
                    r.c.monitor_id, r.c.resolution, r.c.bucket_start, r.c.region, r.c.figures_checks
                )
            )
        ).all()
        tails = (await session.execute(select(tables.day_tails))).all()
        await session.execute(update(r).values(figures_checks=None))
        await session.execute(delete(tables.day_tails))
    found = await answers(stats)
    async with stats.service.sessions() as session, session.begin():
        for monitor_id, resolution, bucket_start, region, checks in kept:
            await session.execute(
                update(r)
                .where(
                    r.c.monitor_id == monitor_id,
                    r.c.resolution == resolution,
                    r.c.bucket_start == bucket_start,
                    r.c.region == region,
                )
                .values(figures_checks=checks)
            )
        if tails:
            await session.execute(tables.day_tails.insert(), [row._asdict() for row in tails])
    return found


async def test_series_and_overview_read_stored_figures_and_answer_as_the_histograms_do(
    early_stats: Harness,
) -> None:
    stats = early_stats
    await feed(stats, [wrap(created(SHOP, "shop")), wrap(created(DB, "db")), *checks()])
    stats.clock.now = NOW
    await stats.service.compact()
    async with stats.service.sessions() as session:
        assert await folded_until(session) == NOW - 5 * M
        r = tables.rollups.c
        rows = (
            await session.execute(
                select(
                    r.resolution, r.bucket_start, r.figures_checks, r.up + r.degraded + r.down
                ).where(r.monitor_id == SHOP, r.resolution != "minute")
            )
        ).all()
        # finished cells carry figures of all their checks; the hour and day in progress none
        for resolution, start, stored, held in rows:
            length = Resolution(resolution).length
            assert stored == (held if start + length <= NOW - 5 * M else None), (resolution, start)
        # the fast paths are taken: "shop" (one region) from stored points and its day tail
        series = await queries.step_cells(session, SHOP, NOV10, NOW, H)
        if is_postgres(session):  # rendered there as one run
            assert series.rendered is not None
            assert series.finished == []
            assert (series.rendered.first, series.rendered.steps) == (NOV10, 24 + 9)
        else:
            assert len(series.finished) == 24 + 9  # 10 Nov and 11 Nov 00:00-08:59
        tails = (
            (
                await session.execute(
                    select(tables.day_tails.c.latency_count).where(
                        tables.day_tails.c.monitor_id == SHOP,
                        tables.day_tails.c.bucket_start == NOV10 + 9 * H,
                    )
                )
            )
            .scalars()
            .all()
        )
        hours = await session.execute(
            select(r.latency_count).where(
                r.monitor_id == SHOP,
                r.resolution == "hour",
                r.bucket_start >= NOV10 + 9 * H,
                r.bucket_start < NOV11,
            )
        )
        assert tails == [sum(hours.scalars())]
        # "db" has two regions: every step merges two cells, no stored point stands alone
        several = await queries.step_cells(session, DB, NOV10, NOW, H)
        assert (several.finished, several.rendered) == ([], None)

    fast = await answers(stats)
    assert fast == await from_histograms_alone(stats)

    # A late result into a finished hour of yesterday: the stored point of that hour and the
    # day tail no longer hold; the answers still equal the histograms' and show the result.
    late = result(SHOP, NOV10 + 10 * H + 7 * M, 1, "eu").model_copy(
        update={"check_id": uuid.uuid4()}
    )
    await feed(stats, [late])
    after = await answers(stats)
    assert after == await from_histograms_alone(stats)
    async with stats.service.sessions() as session:
        # the stored points no longer make one run: they are read one by one
        series = await queries.step_cells(session, SHOP, NOV10, NOW, H)
        assert series.rendered is None
        assert len(series.finished) == 24 + 9 - 1
    assert after != fast
    (ten,) = [p for p in json.loads(after[0])["points"] if p["at"] == "2026-11-10T10:00:00Z"]
    (before,) = [p for p in json.loads(fast[0])["points"] if p["at"] == ten["at"]]
    assert ten["checks"] == before["checks"] + 1


async def test_a_year_of_hours_is_one_series_and_more_is_refused(stats: Harness) -> None:
    base = f"/api/v1/stats/monitors/{SHOP}/timeseries"
    await feed(stats, [wrap(created(SHOP, "shop"))])
    now = stats.clock.now
    year = await stats.client.get(
        base, params={"from": (now - timedelta(days=366)).isoformat(), "step": "1h"}
    )
    assert year.status_code == 200, year.text
    assert len(year.json()["points"]) == 366 * 24
    more = await stats.client.get(
        base, params={"from": (now - timedelta(days=367)).isoformat(), "step": "1h"}
    )
    assert more.status_code == 422
    assert more.headers["content-type"].startswith("application/problem+json")
    assert more.json()["errors"][0]["field"] == "step"


async def test_finishing_a_day_writes_its_tails_and_the_figures_of_its_cells(
    early_stats: Harness,
) -> None:
    stats = early_stats
    # "shop" only, 10 Nov 00:00 to 05:59
    await feed(stats, [wrap(created(SHOP, "shop")), *checks()[: 2 * 36 : 2]])
    for _ in range(10):  # six hours with cells, then one step on to 11 Nov 02:00
        async with stats.service.sessions() as session, session.begin():
            if await compaction.fold_next_hour(session, NOV11 + 2 * H) is None:
                break
    async with stats.service.sessions() as session:
        r = tables.rollups.c
        hour = (
            await session.execute(
                select(
                    *(r[name] for name in StoredCell._fields),
                    r.p50,
                    r.p90,
                    r.p95,
                    r.p99,
                    r.point_json,
                ).where(r.monitor_id == SHOP, r.resolution == "hour", r.bucket_start == NOV10)
            )
        ).one()
        (expected,) = figures([StoredCell._make(hour[:10])])
        assert tuple(hour[10:]) == tuple(expected)[1:]
        assert expected.p95 == Histogram.from_bytes(hour.histogram).quantile(0.95)
        tails = (
            await session.execute(
                select(tables.day_tails.c.bucket_start, tables.day_tails.c.latency_count)
                .where(tables.day_tails.c.monitor_id == SHOP)
                .order_by(tables.day_tails.c.bucket_start)
            )
        ).all()
        # from the first hour with a cell to the end of the day, each hour's histogram onwards
        assert [at for at, _ in tails] == [NOV10 + i * H for i in range(24)]
        assert tails[0].latency_count == sum(1 for i in range(36) if i % 17)
        assert [count for _, count in tails[6:]] == [0] * 18
