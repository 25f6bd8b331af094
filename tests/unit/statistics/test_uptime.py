"""Time-weighted uptime from a status timeline, against hand-computed figures and properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from pingtower.common.events import Status
from pingtower.statistics.domain.uptime import (
    StatusInterval,
    success_ratio,
    timeline,
    uptime,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)


def at(hours: float) -> datetime:
    return T0 + hours * H


# 10 h up, 1 h down (an incident), 2 h maintenance, 3 h up, then down for good.
DAY = timeline(
    [
        (at(0), Status.UP),
        (at(10), Status.DOWN),
        (at(11), Status.UP),
        (at(12), Status.MAINTENANCE),
        (at(14), Status.UP),
        (at(17), Status.DOWN),
    ]
)


def test_one_hour_down_in_a_day_of_counted_time() -> None:
    figures = uptime(DAY, at(0), at(17))
    assert figures.up == 14 * H
    assert figures.down == 1 * H
    assert figures.excluded == 2 * H
    assert figures.ratio == pytest.approx(14 / 15)


def test_window_that_cuts_the_incident_in_two() -> None:
    # [10:30, 13:00): 30 min of the incident, 1 h up, 1 h maintenance (excluded).
    figures = uptime(DAY, at(10.5), at(13))
    assert figures.down == 30 * M
    assert figures.up == 1 * H
    assert figures.excluded == 1 * H
    assert figures.ratio == pytest.approx(60 / 90)


def test_open_interval_lasts_until_the_window_end() -> None:
    figures = uptime(DAY, at(16), at(20))
    assert figures.up == 1 * H
    assert figures.down == 3 * H


def test_maintenance_is_left_out_of_the_figure() -> None:
    # [09:00, 15:00): up 09-10, down 10-11, up 11-12, maintenance 12-14, up 14-15.
    figures = uptime(DAY, at(9), at(15))
    assert (figures.up, figures.down, figures.excluded) == (3 * H, 1 * H, 2 * H)
    assert figures.ratio == pytest.approx(3 / 4)


def test_pending_counts_as_up_and_paused_is_excluded() -> None:
    intervals = timeline(
        [(at(0), Status.PENDING), (at(1), Status.PAUSED), (at(5), Status.DOWN), (at(6), Status.UP)]
    )
    figures = uptime(intervals, at(0), at(7))
    assert (figures.up, figures.down, figures.excluded) == (2 * H, 1 * H, 4 * H)


def test_time_before_the_first_status_counts_nowhere() -> None:
    figures = uptime(DAY, at(-5), at(1))
    assert figures.counted == 1 * H
    assert figures.excluded == timedelta(0)
    assert figures.ratio == 1.0


def test_window_with_only_excluded_time_has_no_figure() -> None:
    assert uptime(DAY, at(12), at(14)).ratio is None


def test_out_of_order_change_points_make_the_same_timeline() -> None:
    changes = [(at(5), Status.DOWN), (at(0), Status.UP), (at(6), Status.UP)]
    assert timeline(changes) == timeline(sorted(changes))
    assert timeline(changes)[0] == StatusInterval(at(0), at(5), Status.UP)


def test_success_ratio_of_checks() -> None:
    assert success_ratio(9, 10) == pytest.approx(0.9)
    assert success_ratio(0, 0) is None
    with pytest.raises(ValueError, match="successful"):
        success_ratio(3, 2)


# --- properties -----------------------------------------------------------------------------

statuses = st.sampled_from(list(Status))
change_lists = st.lists(st.tuples(st.integers(0, 10_000), statuses), min_size=1, max_size=30).map(
    lambda changes: [(T0 + m * M, status) for m, status in changes]
)
minutes = st.integers(-100, 11_000)


@given(change_lists, minutes, minutes)
def test_uptime_is_a_share(changes: list[tuple[datetime, Status]], a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    ratio = uptime(timeline(changes), T0 + lo * M, T0 + hi * M).ratio
    assert ratio is None or 0.0 <= ratio <= 1.0


@given(change_lists, minutes, minutes, minutes)
def test_splitting_a_window_adds_up_exactly(
    changes: list[tuple[datetime, Status]], a: int, b: int, c: int
) -> None:
    lo, mid, hi = (T0 + x * M for x in sorted((a, b, c)))
    intervals = timeline(changes)
    whole = uptime(intervals, lo, hi)
    assert uptime(intervals, lo, mid) + uptime(intervals, mid, hi) == whole
    # so the ratio of the whole is the counted-time-weighted mean of the parts'
    left, right = uptime(intervals, lo, mid), uptime(intervals, mid, hi)
    if whole.ratio is not None:
        weighted = sum(
            (part.ratio or 0.0) * (part.counted / whole.counted) for part in (left, right)
        )
        assert weighted == pytest.approx(whole.ratio)


@given(change_lists, st.integers(1, 500), minutes, minutes, minutes)
def test_excluded_time_never_changes_the_figure(
    changes: list[tuple[datetime, Status]], length: int, a: int, b: int, c: int
) -> None:
    """Insert a maintenance window of `length` at some instant g inside the window (the rest
    of the timeline moves later by `length`, and so does the window's end): up and down time
    stay the same, only the excluded time grows."""
    lo, g, hi = (T0 + x * M for x in sorted((a, b, c)))
    gap = length * M
    before = timeline(changes)
    current = [i.status for i in before if i.start <= g and (i.end is None or g < i.end)]
    assume(current)
    shifted = [(t, s) for t, s in changes if t < g]
    shifted += [(g, Status.MAINTENANCE), (g + gap, current[0])]
    shifted += [(t + gap, s) for t, s in changes if t > g]
    base = uptime(before, lo, hi)
    extended = uptime(timeline(shifted), lo, hi + gap)
    assert (extended.up, extended.down) == (base.up, base.down)
    assert extended.excluded == base.excluded + gap
    assert extended.ratio == base.ratio


@given(change_lists, minutes, minutes)
def test_a_timeline_without_down_is_fully_up(
    changes: list[tuple[datetime, Status]], a: int, b: int
) -> None:
    no_down = [(t, Status.DEGRADED if s is Status.DOWN else s) for t, s in changes]
    lo, hi = sorted((a, b))
    ratio = uptime(timeline(no_down), T0 + lo * M, T0 + hi * M).ratio
    assert ratio in (None, 1.0)
