"""Trend figures, the steady-rise flag, and badge rendering."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pingtower.common.events import Status
from pingtower.statistics.domain import badges
from pingtower.statistics.domain.trends import Trend, slope, steadily_growing


def test_trend_change_and_relative_change() -> None:
    trend = Trend(current=120.0, previous=100.0)
    assert trend.change == 20.0
    assert trend.relative_change == pytest.approx(0.2)
    assert Trend(1.0, None).change is None
    assert Trend(1.0, 0.0).relative_change is None


def test_slope_of_a_line() -> None:
    assert slope([1.0, 3.0, 5.0, 7.0]) == pytest.approx(2.0)
    assert slope([5.0]) == 0.0


def test_a_rise_of_ten_percent_a_day_is_flagged() -> None:
    assert steadily_growing([100 * 1.1**day for day in range(7)])


def test_one_bad_day_is_not_a_trend() -> None:
    assert not steadily_growing([100, 100, 100, 100, 100, 100, 400])


def test_a_small_or_noisy_rise_is_not_flagged() -> None:
    assert not steadily_growing([100, 101, 102, 103, 104, 105, 106])  # 6% over a week
    assert not steadily_growing([100, 150, 90, 160, 95, 170, 140])


def test_too_few_days_with_data_are_not_a_trend() -> None:
    assert not steadily_growing([100, None, None, 200, None, 300, None])


@given(st.lists(st.floats(1, 10_000), min_size=5, max_size=14))
def test_a_series_that_never_rises_is_never_flagged(values: list[float]) -> None:
    assert not steadily_growing(sorted(values, reverse=True))


def test_badge_shows_label_and_value_escaped() -> None:
    svg = badges.render("uptime <30d>", "99.95%", badges.GREEN)
    assert svg.startswith("<svg")
    assert "<title>uptime &lt;30d&gt;: 99.95%</title>" in svg
    assert 'fill="#4c1"' in svg


@pytest.mark.parametrize(
    ("ratio", "text", "color"),
    [
        (1.0, "100%", badges.GREEN),
        (0.99995, "99.99%", badges.GREEN),  # never rounded up to 100%
        (0.995, "99.50%", badges.YELLOW),
        (0.9, "90.00%", badges.RED),
        (None, "no data", badges.GREY),
    ],
)
def test_uptime_badge_text_and_color(ratio: float | None, text: str, color: str) -> None:
    assert badges.format_uptime(ratio) == text
    assert badges.uptime_color(ratio) == color


def test_every_status_has_a_color() -> None:
    assert set(badges.STATUS_COLORS) == set(Status)
