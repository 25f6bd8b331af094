"""What ingest stores for check results and status changes, on both databases: a rollup cell
fed batch by batch holds exactly the sum of its results (SQLite adds to it inside its upsert,
PostgreSQL in Python), and what SQLite's ingest writes straight on the connection reads back
through SQLAlchemy as if SQLAlchemy had written it."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

from sqlalchemy import select

from pingtower.common.events import CheckCompleted, Envelope, MonitorStatusChanged, Outcome, Status
from pingtower.statistics.domain.rollups import Cell, Resolution
from pingtower.statistics.store import tables
from pingtower.statistics.store.ingest import cell_from_row
from tests.integration.statistics.conftest import TENANT, Harness
from tests.integration.statistics.story import NOV10, H, M, feed, wrap

MONITOR = uuid.UUID("00000000-0000-4000-8000-0000000000c1")
MINUTE = NOV10 + 9 * H + 7 * M


def result(rng: random.Random, at_second: float) -> CheckCompleted:
    finished = MINUTE + timedelta(seconds=at_second)
    outcome = rng.choice(list(Outcome))
    latency = None if outcome is Outcome.DOWN else rng.choice([0.0, rng.uniform(0.1, 3000.0)])
    phases = {name: rng.uniform(0, 50) for name in rng.sample(["dns", "connect", "tls"], 2)}
    return CheckCompleted(
        check_id=uuid.UUID(int=rng.getrandbits(122)),
        monitor_id=MONITOR,
        region="eu",
        scheduled_at=finished - timedelta(milliseconds=300),
        started_at=finished - timedelta(milliseconds=200),
        finished_at=finished,
        outcome=outcome,
        latency_ms=latency,
        phases_ms=phases,
    )


async def stored_cell(stats: Harness) -> Cell:
    r = tables.rollups.c
    async with stats.service.sessions() as session:
        row = (
            await session.execute(
                select(tables.rollups).where(
                    r.monitor_id == MONITOR,
                    r.resolution == Resolution.MINUTE.value,
                    r.bucket_start == MINUTE,
                )
            )
        ).one()
    return cell_from_row(row)


async def test_a_cell_fed_batch_by_batch_holds_exactly_the_sum_of_its_results(
    stats: Harness,
) -> None:
    rng = random.Random(7)
    batches = [
        [result(rng, rng.uniform(0, 59.9)) for _ in range(rng.randint(1, 4))] for _ in range(6)
    ]
    expected = Cell()
    for batch in batches:
        await feed(stats, [wrap(event) for event in batch])
        # As a cell is added to the stored one: the batch's results summed first, then added
        summed = Cell()
        for event in batch:
            summed.add_result(event.outcome, event.latency_ms, event.phases_ms)
        expected.merge(summed)
        assert await stored_cell(stats) == expected  # floats compared exactly
    # A replayed batch adds nothing
    await feed(stats, [wrap(event) for event in batches[2]])
    assert await stored_cell(stats) == expected


async def test_a_batch_mixing_stored_and_new_results_adds_only_the_new_ones(
    stats: Harness,
) -> None:
    rng = random.Random(3)
    stored = [result(rng, second) for second in (1.0, 2.0, 3.0)]
    await feed(stats, [wrap(event) for event in stored])
    new = [result(rng, second) for second in (4.0, 5.0)]
    # The stored ones first, between and last: each new result is found whatever its place
    await feed(stats, [wrap(event) for event in (stored[0], new[0], stored[1], new[1], stored[2])])
    expected, added = Cell(), Cell()  # as a batch's cell is added to the stored one
    for event in stored:
        expected.add_result(event.outcome, event.latency_ms, event.phases_ms)
    for event in new:
        added.add_result(event.outcome, event.latency_ms, event.phases_ms)
    expected.merge(added)
    assert await stored_cell(stats) == expected
    async with stats.service.sessions() as session:
        count = len((await session.execute(select(tables.results.c.id))).all())
    assert count == 5


async def test_results_and_last_checks_read_back_as_they_were_given(stats: Harness) -> None:
    rng = random.Random(11)
    first, last = result(rng, 5.25), result(rng, 40.5)
    await feed(stats, [wrap(first), wrap(last)])
    # An older result arriving late does not move the last check back
    await feed(stats, [wrap(result(rng, 20.0))])

    results, monitors = tables.results.c, tables.monitors.c
    async with stats.service.sessions() as session:
        # SQLAlchemy binds the filter values in its own stored form: they must match exactly
        row = (
            await session.execute(
                select(tables.results).where(
                    results.check_id == last.check_id,
                    results.monitor_id == MONITOR,
                    results.finished_at == last.finished_at,
                )
            )
        ).one()
        monitor = (
            await session.execute(select(tables.monitors).where(monitors.monitor_id == MONITOR))
        ).one()
    assert (row.tenant, row.region, row.outcome) == (TENANT, "eu", last.outcome.value)
    assert (row.scheduled_at, row.started_at) == (last.scheduled_at, last.started_at)
    assert (row.latency_ms, row.phases) == (last.latency_ms, last.phases_ms)
    assert (row.error_kind, row.status_code) == (None, None)
    assert monitor.tenant == TENANT
    assert (monitor.last_check_at, monitor.last_outcome, monitor.last_latency_ms) == (
        last.finished_at,
        last.outcome.value,
        last.latency_ms,
    )


async def test_status_changes_of_one_batch_and_at_one_instant_build_one_timeline(
    stats: Harness,
) -> None:
    at = NOV10 + 9 * H

    def changed(minutes: int, current: Status, reason: str = "") -> Envelope:
        return wrap(
            MonitorStatusChanged(
                monitor_id=MONITOR,
                previous=Status.UP,
                current=current,
                changed_at=at + minutes * M,
                reason=reason,
            )
        )

    # One batch, out of order; then a late one inside, and one at an instant already there
    await feed(stats, [changed(30, Status.UP), changed(0, Status.UP), changed(10, Status.DOWN)])
    await feed(stats, [changed(20, Status.DEGRADED)])
    await feed(stats, [changed(10, Status.MAINTENANCE, "window")])

    c = tables.status_intervals.c
    async with stats.service.sessions() as session:
        rows = (
            await session.execute(
                select(c.tenant, c.start_at, c.end_at, c.status, c.reason).order_by(c.start_at)
            )
        ).all()
    starts = [at + minutes * M for minutes in (0, 10, 20, 30)]
    assert [(row.start_at, row.end_at) for row in rows] == list(
        zip(starts, [*starts[1:], None], strict=True)
    )
    assert [row.status for row in rows] == ["up", "maintenance", "degraded", "up"]
    assert [row.reason for row in rows] == ["", "window", "", ""]
    assert {row.tenant for row in rows} == {TENANT}
