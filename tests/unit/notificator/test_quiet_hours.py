"""Quiet hours hold a channel's messages until the daily window ends, in local time."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from hypothesis import given
from hypothesis import strategies as st

from pingtower.notificator.domain.quiet_hours import QuietHours

NIGHT = QuietHours(time(22, 0), time(7, 0), "Europe/Berlin")
LUNCH = QuietHours(time(12, 0), time(13, 0), "UTC")


def test_a_message_in_the_night_waits_until_seven_local_time() -> None:
    late = datetime(2026, 11, 29, 22, 30, tzinfo=UTC)  # 23:30 in Berlin
    assert NIGHT.hold_until(late) == datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
    early = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)  # 04:00 in Berlin
    assert NIGHT.hold_until(early) == datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


def test_a_message_outside_the_window_goes_at_once() -> None:
    assert NIGHT.hold_until(datetime(2026, 11, 29, 12, 0, tzinfo=UTC)) is None
    assert LUNCH.hold_until(datetime(2026, 11, 29, 13, 0, tzinfo=UTC)) is None


def test_the_end_follows_daylight_saving_time() -> None:
    summer = datetime(2026, 7, 1, 23, 0, tzinfo=UTC)  # 01:00 in Berlin (UTC+2)
    assert NIGHT.hold_until(summer) == datetime(2026, 7, 2, 5, 0, tzinfo=UTC)


@given(st.integers(min_value=0, max_value=60 * 24 * 366))
def test_a_held_message_is_released_outside_the_window_within_a_day(minutes: int) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    for window in (NIGHT, LUNCH):
        until = window.hold_until(at)
        if until is not None:
            assert at < until <= at + timedelta(days=1)
            assert window.hold_until(until) is None
