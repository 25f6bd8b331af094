"""The status page's pure rules: the 90 UTC days, their uptime, groups, titles and logos."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pingtower.common.events import Status
from pingtower.statistics.domain.status_page import (
    MAX_LOGO_BYTES,
    LogoRefused,
    check_logo,
    clean_title,
    daily_uptime,
    day_windows,
    group_of,
)
from pingtower.statistics.domain.uptime import StatusInterval, uptime
from pingtower.statistics.domain.uptime import timeline as make_timeline

NOW = datetime(2026, 11, 10, 12, 30, tzinfo=UTC)
DAY = timedelta(days=1)
MIDNIGHT = datetime(2026, 11, 10, tzinfo=UTC)


def test_the_page_covers_90_utc_days_ending_now() -> None:
    windows = day_windows(NOW)
    assert len(windows) == 90
    assert windows[-1] == (MIDNIGHT, NOW)
    assert windows[0] == (MIDNIGHT - 89 * DAY, MIDNIGHT - 88 * DAY)
    assert all(end == following for (_, end), (following, _) in itertools.pairwise(windows))


def test_each_day_gets_the_time_weighted_uptime_of_that_day_only() -> None:
    timeline = [
        StatusInterval(MIDNIGHT - DAY, MIDNIGHT - DAY + timedelta(hours=18), Status.UP),
        StatusInterval(MIDNIGHT - timedelta(hours=6), MIDNIGHT + timedelta(hours=3), Status.DOWN),
        StatusInterval(MIDNIGHT + timedelta(hours=3), None, Status.MAINTENANCE),
    ]
    figures = daily_uptime(timeline, day_windows(NOW, days=3))
    assert [f.ratio for f in figures] == [None, 0.75, 0.0]
    assert figures[1].down == timedelta(hours=6)
    assert figures[2].excluded == timedelta(hours=9, minutes=30)


@given(
    st.lists(st.tuples(st.integers(0, 5 * 24 * 60), st.sampled_from(list(Status))), max_size=30),
    st.integers(1, 6),
)
def test_walking_the_timeline_once_gives_each_days_own_figures(
    changes: list[tuple[int, Status]], days: int
) -> None:
    """Against the plain definition: `uptime` over the whole timeline, day by day."""
    start = MIDNIGHT - 4 * DAY
    timeline = make_timeline((start + timedelta(minutes=m), status) for m, status in changes)
    windows = day_windows(NOW, days=days)
    assert daily_uptime(timeline, windows) == [uptime(timeline, lo, hi) for lo, hi in windows]


def test_the_first_tag_alphabetically_names_the_group() -> None:
    assert group_of(["web", "api"]) == "api"
    assert group_of([]) == "Services"


def test_a_blank_title_is_no_title() -> None:
    assert clean_title("  Acme\n  status ") == "Acme status"
    assert clean_title("   ") is None
    assert clean_title(None) is None


PNG = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"


def test_png_jpeg_and_svg_logos_are_accepted_by_their_content() -> None:
    assert check_logo("image/PNG", PNG) == "image/png"
    assert check_logo("image/jpeg", b"\xff\xd8\xff\xe0\0\x10JFIF") == "image/jpeg"
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>'
    assert check_logo("image/svg+xml; charset=utf-8", svg) == "image/svg+xml"


@pytest.mark.parametrize(
    ("content_type", "data", "status"),
    [
        ("image/gif", b"GIF89a", 415),
        ("", PNG, 415),
        ("image/png", PNG + b"\0" * MAX_LOGO_BYTES, 413),
        ("image/png", b"", 422),
        ("image/jpeg", PNG, 422),
        ("image/svg+xml", b"\xff\xfe<svg/>", 422),
        ("image/svg+xml", b"<svg", 422),
        ("image/svg+xml", b"<html/>", 422),
        ("image/svg+xml", b'<!DOCTYPE svg [<!ENTITY x "y">]><svg>&x;</svg>', 422),
    ],
)
def test_other_files_are_refused_with_the_fitting_status(
    content_type: str, data: bytes, status: int
) -> None:
    with pytest.raises(LogoRefused) as refused:
        check_logo(content_type, data)
    assert refused.value.status == status
    assert str(refused.value)
