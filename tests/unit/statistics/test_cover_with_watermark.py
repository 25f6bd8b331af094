"""Reading a range while compaction is behind: hour and day cells only before the watermark."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from pingtower.statistics.domain.rollups import Resolution, cover, floor_to

T0 = datetime(2026, 1, 1, tzinfo=UTC)
minutes = st.integers(0, 40 * 24 * 60)


def test_time_after_the_watermark_is_read_from_minute_cells() -> None:
    start = datetime(2026, 8, 1, tzinfo=UTC)
    folded = datetime(2026, 8, 3, 5, tzinfo=UTC)
    segments = cover(start, datetime(2026, 8, 3, 7, 30, tzinfo=UTC), folded)
    assert [(s.resolution, s.start, s.end) for s in segments] == [
        (Resolution.DAY, start, datetime(2026, 8, 3, tzinfo=UTC)),
        (Resolution.HOUR, datetime(2026, 8, 3, tzinfo=UTC), folded),
        (Resolution.MINUTE, folded, datetime(2026, 8, 3, 7, 30, tzinfo=UTC)),
    ]


def test_a_range_wholly_after_the_watermark_reads_minutes_only() -> None:
    start = datetime(2026, 8, 3, 6, tzinfo=UTC)
    segments = cover(start, start + timedelta(hours=3), datetime(2026, 8, 3, 5, tzinfo=UTC))
    assert [s.resolution for s in segments] == [Resolution.MINUTE]


@given(minutes, minutes, st.integers(0, 40 * 24))
def test_cover_stays_contiguous_and_no_coarse_cell_reaches_past_the_watermark(
    a: int, b: int, folded_hours: int
) -> None:
    lo, hi = sorted((a, b))
    start, end = T0 + timedelta(minutes=lo), T0 + timedelta(minutes=hi)
    folded = T0 + timedelta(hours=folded_hours)
    segments = cover(start, end, folded)
    if start == end:
        assert segments == []
        return
    assert (segments[0].start, segments[-1].end) == (start, end)
    for left, right in itertools.pairwise(segments):
        assert left.end == right.start
    for segment in segments:
        length = segment.resolution.length
        assert floor_to(segment.start, length) == segment.start
        assert floor_to(segment.end, length) == segment.end
        if segment.resolution is not Resolution.MINUTE:
            assert segment.end <= folded
    assert len(segments) <= 5
