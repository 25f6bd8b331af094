"""Rollup cells and how a range is read from the coarsest cells that fit."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pingtower.common.events import CheckCompleted, Outcome
from pingtower.statistics.domain.rollups import (
    Cell,
    Resolution,
    cover,
    floor_to,
    merge_all,
    minute_starts,
    resolution_for_step,
    summed_cells,
    written_resolutions,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_ninety_days_are_read_mostly_from_day_cells() -> None:
    start = datetime(2026, 8, 3, 14, 25, 30, tzinfo=UTC)
    segments = cover(start, start + timedelta(days=90))
    assert [s.resolution for s in segments] == [
        Resolution.MINUTE,
        Resolution.HOUR,
        Resolution.DAY,
        Resolution.HOUR,
        Resolution.MINUTE,
    ]
    day = next(s for s in segments if s.resolution is Resolution.DAY)
    assert (day.start, day.end) == (
        datetime(2026, 8, 4, tzinfo=UTC),
        datetime(2026, 11, 1, tzinfo=UTC),
    )
    assert segments[0].start == datetime(2026, 8, 3, 14, 25, tzinfo=UTC)  # widened to a minute


@given(st.integers(0, 400 * 24 * 60), st.integers(0, 400 * 24 * 60))
def test_cover_is_contiguous_and_each_segment_holds_whole_buckets(a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    start, end = T0 + timedelta(minutes=lo), T0 + timedelta(minutes=hi)
    segments = cover(start, end)
    if start == end:
        assert segments == []
        return
    assert segments[0].start == start
    assert segments[-1].end == end
    for left, right in itertools.pairwise(segments):
        assert left.end == right.start
    for segment in segments:
        length = segment.resolution.length
        assert segment.start < segment.end
        assert floor_to(segment.start, length) == segment.start
        assert floor_to(segment.end, length) == segment.end
    assert len(segments) <= 5


def cell_of(results: list[tuple[Outcome, float | None]]) -> Cell:
    cell = Cell()
    for outcome, latency in results:
        cell.add_result(outcome, latency, {"dns": 1.0} if latency is not None else {})
    return cell


result_lists = st.lists(
    st.tuples(
        st.sampled_from(list(Outcome)),
        st.none() | st.floats(min_value=0.5, max_value=5000, allow_nan=False),
    ),
    max_size=40,
)


@given(result_lists, st.integers(0, 40), st.randoms())
def test_results_give_the_same_cell_in_any_order_and_split(
    results: list[tuple[Outcome, float | None]], cut: int, rng: object
) -> None:
    shuffled = list(results)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    whole = cell_of(results)
    parts = merge_all([cell_of(shuffled[:cut]), cell_of(shuffled[cut:])])
    assert (parts.up, parts.degraded, parts.down) == (whole.up, whole.degraded, whole.down)
    assert parts.latency_count == whole.latency_count
    assert parts.latency_min == whole.latency_min
    assert parts.latency_max == whole.latency_max
    assert parts.latency_sum == pytest.approx(whole.latency_sum)
    assert parts.histogram == whole.histogram
    assert parts.phase_counts == whole.phase_counts


@given(st.integers(0, 3 * 24 * 3600 * 1000), st.integers(-600_000, 3 * 3600 * 1000))
def test_minute_starts_are_the_minute_buckets_that_begin_in_the_span(a: int, span: int) -> None:
    """The keys a reader seeks a monitor's minute cells by: every bucket start within
    [start, end), and nothing else (counted here in whole milliseconds from T0, a minute)."""
    start, end = T0 + timedelta(milliseconds=a), T0 + timedelta(milliseconds=a + span)
    first, stop = -(-a // 60_000), -(-(a + span) // 60_000)
    expected = [T0 + timedelta(minutes=k) for k in range(first, stop)]
    assert minute_starts(start, end) == expected


def test_cell_counts_outcomes_and_latency() -> None:
    cell = cell_of([(Outcome.UP, 100.0), (Outcome.DEGRADED, 300.0), (Outcome.DOWN, None)])
    assert (cell.checks, cell.successful) == (3, 2)
    assert (cell.latency_min, cell.latency_max, cell.mean) == (100.0, 300.0, 200.0)
    assert cell.phase_means() == {"dns": 1.0}


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (timedelta(minutes=5), Resolution.MINUTE),
        (timedelta(minutes=90), Resolution.MINUTE),
        (timedelta(hours=2), Resolution.HOUR),
        (timedelta(days=7), Resolution.DAY),
    ],
)
def test_timeseries_step_reads_the_coarsest_resolution_that_tiles_it(
    step: timedelta, expected: Resolution
) -> None:
    assert resolution_for_step(step) is expected


def test_step_shorter_than_a_minute_is_refused() -> None:
    with pytest.raises(ValueError, match="minutes"):
        resolution_for_step(timedelta(seconds=30))


MONITOR = uuid.UUID(int=5, version=4)


def result_at(finished: datetime, region: str, latency: float) -> CheckCompleted:
    return CheckCompleted(
        check_id=uuid.uuid4(),
        monitor_id=MONITOR,
        region=region,
        scheduled_at=finished,
        started_at=finished,
        finished_at=finished,
        outcome=Outcome.UP,
        latency_ms=latency,
        phases_ms={"dns": 1.0},
    )


def test_results_are_summed_into_their_minute_cells_and_late_ones_into_every_resolution() -> None:
    folded = T0 + timedelta(hours=2)
    at = T0 + timedelta(hours=3, minutes=4)
    late = T0 + timedelta(hours=1, minutes=30)
    cells = summed_cells(
        [
            ("acme", result_at(at + timedelta(seconds=1), "eu", 10.0)),
            ("acme", result_at(at + timedelta(seconds=59), "eu", 30.0)),
            ("acme", result_at(at, "us", 20.0)),
            ("acme", result_at(late, "eu", 40.0)),
        ],
        folded,
    )
    checks_per_cell = {
        (MONITOR, "eu", "minute", at): 2,
        (MONITOR, "us", "minute", at): 1,
        (MONITOR, "eu", "minute", late): 1,
        (MONITOR, "eu", "hour", T0 + timedelta(hours=1)): 1,
        (MONITOR, "eu", "day", T0): 1,
    }
    assert {key: cell.checks for key, (_, cell) in cells.items()} == checks_per_cell
    assert cells[(MONITOR, "eu", "minute", at)][1].latency_sum == 40.0
    assert {tenant for tenant, _ in cells.values()} == {"acme"}
    assert written_resolutions(late, folded) == (Resolution.DAY, Resolution.HOUR, Resolution.MINUTE)
    assert written_resolutions(folded, folded) == (Resolution.MINUTE,)
