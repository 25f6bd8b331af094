"""MTTR and MTBF of a monitor's incidents; how report windows are read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pingtower.statistics.domain import windows
from pingtower.statistics.domain.incidents import IncidentSpan, mtbf, mttr

T0 = datetime(2026, 11, 1, tzinfo=UTC)
H = timedelta(hours=1)


def test_mttr_is_the_mean_duration_of_resolved_incidents() -> None:
    spans = [
        IncidentSpan(T0, T0 + 1 * H),
        IncidentSpan(T0 + 5 * H, T0 + 8 * H),
        IncidentSpan(T0 + 20 * H, None),  # still open: not a recovery yet
    ]
    assert mttr(spans) == 2 * H


def test_mtbf_is_the_mean_time_from_recovery_to_the_next_failure() -> None:
    spans = [
        IncidentSpan(T0 + 5 * H, T0 + 8 * H),
        IncidentSpan(T0, T0 + 1 * H),
        IncidentSpan(T0 + 20 * H, None),
    ]
    # gaps: 1h -> 5h = 4h, 8h -> 20h = 12h
    assert mtbf(spans) == 8 * H


def test_no_incidents_no_figures() -> None:
    assert mttr([]) is None
    assert mtbf([IncidentSpan(T0, T0 + H)]) is None


NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_rolling_window_ends_now() -> None:
    assert windows.resolve(NOW, window="7d") == (NOW - timedelta(days=7), NOW)


def test_calendar_month() -> None:
    assert windows.resolve(NOW, month="2026-10") == (
        datetime(2026, 10, 1, tzinfo=UTC),
        datetime(2026, 11, 1, tzinfo=UTC),
    )
    assert windows.month_range("2026-12")[1] == datetime(2027, 1, 1, tzinfo=UTC)


def test_custom_range_is_cut_at_now() -> None:
    start = NOW - timedelta(hours=3)
    assert windows.resolve(NOW, start=start, end=NOW + H) == (start, NOW)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"window": "13x"}, "window"),
        ({"month": "2026-13"}, "month"),
        ({"window": "24h", "month": "2026-10"}, "window"),
        ({"end": NOW}, "from"),
        ({"start": NOW, "end": NOW - H}, "from"),
    ],
)
def test_bad_windows_name_the_parameter(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(windows.WindowError) as raised:
        windows.resolve(NOW, **kwargs)  # type: ignore[arg-type]
    assert raised.value.field == field


def test_steps() -> None:
    assert windows.parse_step("5m") == timedelta(minutes=5)
    assert windows.parse_step("1d") == timedelta(days=1)
    with pytest.raises(windows.WindowError):
        windows.parse_step("0m")
    with pytest.raises(windows.WindowError):
        windows.parse_step("5s")
