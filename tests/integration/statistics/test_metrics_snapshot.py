"""The metrics snapshot read a page of monitors at a time gives the gauges and the latency
snapshot that reading every monitor at once (the read side's general queries) gives."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from pingtower.common import memory, sqlite_driver
from pingtower.common.events import Envelope, MonitorCreated, Status
from pingtower.statistics.domain.uptime import uptime
from pingtower.statistics.metrics import MONITORS, MonitorSample
from pingtower.statistics.store import queries, tables
from tests.integration.statistics.conftest import Clock, Harness, harness
from tests.integration.statistics.story import (
    NOV9,
    NOV10,
    H,
    M,
    change,
    check,
    created,
    everything,
    feed,
    wrap,
)

FLEET = [uuid.UUID(int=(0x5000 + i) << 64 | 0x4000_8000_0000_0000 + i) for i in range(23)]
STATUSES = [Status.UP, Status.DOWN, Status.DEGRADED, Status.MAINTENANCE, Status.PENDING]


def fleet() -> list[Envelope]:
    """23 more monitors: some with status changes within the last day (closed intervals in
    the window), some with none (open interval alone), some with no status at all, one
    paused, most with checks."""
    envelopes: list[Envelope] = []
    for i, monitor_id in enumerate(FLEET):
        event = created(monitor_id, f"fleet-{i}")
        if i == 7:
            event = MonitorCreated(**{**event.model_dump(), "paused": True})
        envelopes.append(wrap(event))
        if i % 6 == 5:
            continue  # no status known yet
        previous = Status.UNKNOWN
        start = NOV9 - timedelta(days=1) if i % 2 else NOV10 + i * 5 * M
        for step in range(i % 4 + 1):
            current = STATUSES[(i + step) % len(STATUSES)]
            envelopes.append(change(monitor_id, start + step * (i + 1) * 17 * M, previous, current))
            previous = current
        for minute in range(0, 60, 1 + i % 5):
            envelopes.append(
                wrap(check(minute, float(10 + (i * minute) % 97), monitor_id=monitor_id))
            )
    return envelopes


async def expected(
    stats: Harness, now: datetime
) -> tuple[dict[str, MonitorSample], dict[uuid.UUID, float | None]]:
    """The gauges and the p95s from every live monitor read at once, as the snapshot was
    computed before it read pages."""
    day = now - timedelta(hours=24)
    async with stats.service.sessions() as session:
        rows = (
            await session.execute(
                select(tables.monitors).where(tables.monitors.c.deleted_at.is_(None))
            )
        ).all()
        ids = [row.monitor_id for row in rows]
        current = await queries.current_statuses(session, ids)
        timelines = await queries.timelines(session, ids, day, now)
        histograms = await queries.recent_histograms(session, ids, day, now)
    samples = {
        str(row.monitor_id): MonitorSample(
            tenant=row.tenant,
            monitor_id=str(row.monitor_id),
            name=row.name,
            status=Status.PAUSED
            if row.paused
            else current.get(row.monitor_id, (Status.UNKNOWN, None))[0],
            last_latency_ms=row.last_latency_ms,
            uptime_24h=uptime(timelines.get(row.monitor_id, []), day, now).ratio,
        )
        for row in rows
    }
    p95 = {m: None if (found := histograms.get(m)) is None else found.quantile(0.95) for m in ids}
    return samples, p95


@pytest.mark.parametrize(
    "now",
    [NOV10 + 12 * H, NOV10 + timedelta(days=1) + 6 * H + 30 * M],
    ids=["same-day", "next-morning"],
)
@pytest.mark.parametrize("page", [1, 4, 250])
async def test_a_paged_refresh_gives_every_monitor_once_with_the_figures_of_a_full_read(
    stats: Harness, now: datetime, page: int
) -> None:
    await feed(stats, [*everything(), *fleet()])
    stats.clock.now = now
    await stats.service.compact()  # hour and day cells, day tails: every histogram path
    want_samples, want_p95 = await expected(stats, now)
    assert len(want_samples) == 3 + len(FLEET)
    stats.service.metrics_page = page
    assert await stats.service.refresh_metrics() == len(want_samples)
    got = [sample.monitor_id for sample in MONITORS.samples]
    assert len(got) == len(set(got))  # no monitor twice, at a page's edge or elsewhere
    assert {sample.monitor_id: sample for sample in MONITORS.samples} == want_samples
    assert stats.service.latency.p95_24h == want_p95
    assert any(p95 is not None for p95 in want_p95.values())
    statuses = {sample.status for sample in want_samples.values()}
    assert {Status.PAUSED, Status.UNKNOWN, Status.UP, Status.DOWN} <= statuses
    uptimes = {sample.uptime_24h for sample in want_samples.values()}
    assert None in uptimes  # no status, or only excluded time
    assert len(uptimes) > 4  # timelines of several shapes


async def test_a_slow_refresh_spaces_out_the_next_and_keeps_its_figures_usable_until_then(
    stats: Harness,
) -> None:
    await feed(stats, everything())
    await stats.service.refresh_metrics()
    # quick here: the next run comes after the period and the snapshot lives its usual age
    assert stats.service.metrics_pause == stats.service.metrics_every
    usual = stats.service.latency.max_age
    stats.service.metrics_every = timedelta(0)
    await stats.service.refresh_metrics()
    pause = stats.service.metrics_pause
    assert pause > timedelta(0)  # in proportion to how long the run took
    assert stats.service.latency.max_age == max(usual, 2 * pause)


async def test_on_sqlite_the_snapshot_reads_beside_a_writer_without_waiting_for_it(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Its pages read in read-only transactions, which take no write lock: a writer holding
    it (ingest, compaction) keeps the snapshot from nothing, nor the snapshot the writer."""
    async with harness(sqlite_url, tmp_path, Clock(NOV10 + 10 * H), background=False) as stats:
        await feed(stats, everything())
        async with stats.service.sessions() as writer, writer.begin():
            await writer.execute(tables.watermarks.update().values(name="rollups"))
            # a writer would wait for the lock until the busy timeout (30 s)
            assert await asyncio.wait_for(stats.service.refresh_metrics(), 10) > 0


async def test_a_refresh_reads_on_the_loops_thread_and_gives_its_peak_back(
    stats: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its pages' reads under `reads_on_this_thread` (on SQLite: on the event loop's thread;
    elsewhere nothing changes), and the freed memory of the old snapshot and the pages given
    back to the system once the new one is in place."""
    await feed(stats, everything())
    pages = queries.monitor_facts_page
    flags: list[bool] = []
    released: list[bool] = []

    async def page(*args: Any, **kwargs: Any) -> Any:
        flags.append(sqlite_driver._READS_HERE.get())
        return await pages(*args, **kwargs)

    monkeypatch.setattr(queries, "monitor_facts_page", page)
    monkeypatch.setattr(memory, "release_freed_memory", lambda: released.append(True))
    assert await stats.service.refresh_metrics() > 0
    assert flags
    assert all(flags)
    assert released == [True]
