"""The recent latency histograms (the 24-hour p95 of the overview and the metrics snapshot)
read from day tails, today's day cell, hour cells and the minute cells not folded yet must
hold exactly the latencies of every minute cell in the window, whichever parts a monitor's
come from: tails that still hold their hour cells, tails a late result has made stale, or
no day cell yet."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from pingtower.common.events import CheckCompleted
from pingtower.statistics.domain.histogram import Histogram
from pingtower.statistics.domain.rollups import Resolution, floor_to
from pingtower.statistics.store import queries, tables
from tests.integration.statistics.conftest import Harness
from tests.integration.statistics.story import (
    DB,
    NOV10,
    SHOP,
    H,
    M,
    check,
    everything,
    feed,
    wrap,
)


def result(monitor_id: uuid.UUID, at: datetime, latency: float) -> CheckCompleted:
    event = check(0, latency, monitor_id=monitor_id)
    return CheckCompleted(
        **{
            **event.model_dump(),
            "check_id": uuid.uuid4(),
            "scheduled_at": at - timedelta(seconds=2),
            "started_at": at - timedelta(seconds=1),
            "finished_at": at,
        }
    )


async def from_minute_cells(
    stats: Harness, ids: list[uuid.UUID], start: datetime, end: datetime
) -> dict[uuid.UUID, Histogram]:
    """Every minute cell of [floor_hour(start), end) merged per monitor: what the parts hold."""
    r = tables.rollups.c
    first_hour = floor_to(start, Resolution.HOUR.length)
    async with stats.service.sessions() as session:
        rows = await session.execute(
            select(r.monitor_id, r.histogram).where(
                r.resolution == Resolution.MINUTE.value,
                r.bucket_start >= first_hour,
                r.bucket_start < end,
                r.monitor_id.in_(ids),
            )
        )
        parts: dict[uuid.UUID, list[bytes]] = {}
        for monitor_id, histogram in rows.all():
            parts.setdefault(monitor_id, []).append(histogram)
    return {m: Histogram.from_bytes_many(found) for m, found in parts.items()}


@pytest.mark.parametrize("late", [False, True], ids=["tails-hold", "late-result"])
@pytest.mark.parametrize(
    # next morning the window starts at 08:00 yesterday, the first hour with day tails
    "now",
    [NOV10 + 12 * H, NOV10 + 32 * H + 30 * M],
    ids=["same-day", "next-morning"],
)
async def test_recent_histograms_hold_every_minute_cell_of_the_window(
    stats: Harness, now: datetime, late: bool
) -> None:
    extra = [
        # yesterday evening (next-morning: an hour cell before the tails' first hour)
        *(wrap(result(DB, NOV10 + 20 * H + i * M, 30.0 + 7 * i)) for i in range(5)),
        *(wrap(result(SHOP, NOV10 + 23 * H + 50 * M, 250.0 + i)) for i in range(3)),
    ]
    await feed(stats, [*everything(), *extra])
    stats.clock.now = now
    await stats.service.compact()  # hour and day cells, and next morning the day tails
    folded = floor_to(now - 5 * M, Resolution.MINUTE.length)  # compaction's grace: 5 minutes
    fresh = [
        result(SHOP, now - 2 * M, 900.0),
        result(DB, now - 3 * M, 0.0),
        result(DB, folded + timedelta(seconds=10), 77.0),  # the first minute not folded
    ]
    if late:
        # before the watermark: into minute, hour and day cells, so SHOP's tails miss it
        fresh += [result(SHOP, NOV10 + 8 * H + 30 * M + 30 * timedelta(seconds=1), 4321.0)]
    await feed(stats, [wrap(event) for event in fresh])
    ids = [SHOP, DB]
    start = now - 24 * H
    async with stats.service.sessions() as session:
        found = await queries.recent_histograms(session, ids, start, now)
        first_hour = floor_to(start, Resolution.HOUR.length)
        t = tables.day_tails.c
        tails = (
            await session.execute(select(t.monitor_id).where(t.bucket_start == first_hour))
        ).all()
    want = await from_minute_cells(stats, ids, start, now)
    assert set(want) == set(ids)
    assert found == want
    # next morning SHOP has tails from the window's first hour (DB's begin at 20:00, so its
    # hour cells are read instead)
    assert {row[0] for row in tails} == ({SHOP} if now > NOV10 + 24 * H else set())
    if late:
        assert found[SHOP].quantile(1.0) == pytest.approx(4321.0, rel=0.01)
