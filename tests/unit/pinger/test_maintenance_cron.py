"""Recurring maintenance windows by cron expression, in a time zone, across daylight saving."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pingtower.pinger.domain.maintenance import Cron, in_maintenance
from pingtower.pinger.domain.monitor import InvalidSettingError

MINUTE = timedelta(minutes=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_a_cron_window_is_active_from_each_start_for_its_duration() -> None:
    window = Cron("0 3 * * 1-5", timedelta(minutes=30), "UTC")  # weekdays 03:00-03:30
    monday = utc(2026, 11, 30, 3)
    assert not window.is_active(monday - timedelta(microseconds=1))
    assert window.is_active(monday)
    assert window.is_active(monday + timedelta(minutes=29, seconds=59))
    assert not window.is_active(monday + timedelta(minutes=30))
    assert not window.is_active(utc(2026, 11, 29, 3, 10))  # a Sunday


def test_a_cron_window_follows_local_wall_clock_time() -> None:
    # 02:00 in Berlin: 01:00 UTC in winter, 00:00 UTC in summer.
    window = Cron("0 2 * * *", timedelta(hours=1), "Europe/Berlin")
    assert window.is_active(utc(2026, 1, 10, 1, 30))
    assert not window.is_active(utc(2026, 1, 10, 0, 30))
    assert window.is_active(utc(2026, 7, 10, 0, 30))
    assert not window.is_active(utc(2026, 7, 10, 1, 30))


def test_a_cron_window_can_last_past_the_next_day() -> None:
    window = Cron("0 22 * * 6", timedelta(hours=30), "UTC")  # Saturday 22:00 to Monday 04:00
    assert window.is_active(utc(2026, 11, 29, 12))
    assert window.is_active(utc(2026, 11, 30, 3, 59))
    assert not window.is_active(utc(2026, 11, 30, 4))


def test_a_start_in_the_skipped_hour_happens_when_the_clocks_jump() -> None:
    # Berlin skips 02:00-03:00 on 2026-03-29 (01:00 UTC): the 02:30 start happens at the jump.
    window = Cron("30 2 * * *", timedelta(hours=1), "Europe/Berlin")
    assert not window.is_active(utc(2026, 3, 29, 0, 59))
    assert window.is_active(utc(2026, 3, 29, 1, 0))
    assert window.is_active(utc(2026, 3, 29, 1, 59))
    assert not window.is_active(utc(2026, 3, 29, 2, 0))


def test_a_start_in_the_repeated_hour_happens_once_and_lasts_its_elapsed_duration() -> None:
    # Berlin repeats 02:00-03:00 on 2026-10-25 (00:00-02:00 UTC): the 02:30 start is at its first
    # occurrence (00:30 UTC) and the hour-long window ends at 01:30 UTC (02:30 again, local).
    window = Cron("30 2 * * *", timedelta(hours=1), "Europe/Berlin")
    assert not window.is_active(utc(2026, 10, 25, 0, 29))
    assert window.is_active(utc(2026, 10, 25, 0, 30))
    assert window.is_active(utc(2026, 10, 25, 1, 29))
    assert not window.is_active(utc(2026, 10, 25, 1, 30))
    assert not window.is_active(utc(2026, 10, 25, 1, 45))  # 02:45 local, second time round


def test_the_second_pass_of_a_repeated_hour_starts_no_window_again() -> None:
    # New York repeats 01:00-02:00 on 2026-11-01: 01:15 EDT (05:15 UTC) starts the window, 01:15
    # EST (06:15 UTC) does not, nor does anything just before it.
    window = Cron("15 1 * * *", timedelta(minutes=1), "America/New_York")
    assert window.is_active(utc(2026, 11, 1, 5, 15))
    assert not window.is_active(utc(2026, 11, 1, 6, 1))
    assert not window.is_active(utc(2026, 11, 1, 6, 15))


def test_a_window_over_the_clock_change_lasts_its_elapsed_duration() -> None:
    # 01:00 local for 3 hours on the night New York springs forward ends at 05:00 local (09:00 UTC).
    window = Cron("0 1 * * *", timedelta(hours=3), "America/New_York")
    assert window.is_active(utc(2026, 3, 8, 6))
    assert window.is_active(utc(2026, 3, 8, 8, 59))
    assert not window.is_active(utc(2026, 3, 8, 9))


def test_cron_window_validation_names_the_field() -> None:
    cases = [
        (("not cron", timedelta(hours=1), "UTC"), "cron"),
        (("0 0 30 2 *", timedelta(hours=1), "UTC"), "cron"),
        (("0 3 * * *", timedelta(0), "UTC"), "duration_minutes"),
        (("0 3 * * *", timedelta(days=7, minutes=1), "UTC"), "duration_minutes"),
        (("0 3 * * *", timedelta(hours=1), "Mars/Olympus"), "timezone"),
    ]
    for args, field in cases:
        with pytest.raises(InvalidSettingError) as error:
            Cron(*args)
        assert error.value.field == field, args


def test_cron_windows_count_among_the_windows_of_a_monitor() -> None:
    window = Cron("*/10 * * * *", timedelta(minutes=2), "UTC")
    assert in_maintenance([window], utc(2026, 11, 29, 12, 21))
    assert not in_maintenance([window], utc(2026, 11, 29, 12, 22))


# The property tests compare with an oracle that knows nothing of cron: it walks the UTC minutes
# of the last `duration` and asks whether the local clock read the start time at that minute
# (first occurrence only, when the hour repeats) or jumped over it.

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Australia/Lord_Howe"]
TRANSITIONS = [  # instants (UTC) at which those zones change their clocks in 2026
    utc(2026, 3, 29, 1),
    utc(2026, 10, 25, 1),
    utc(2026, 3, 8, 7),
    utc(2026, 11, 1, 6),
    utc(2026, 4, 4, 16),
    utc(2026, 10, 3, 16),
    utc(2026, 4, 4, 15),
    utc(2026, 10, 3, 15, 30),
]


def daily_start_oracle(hour: int, minute: int, tz: ZoneInfo, at: datetime, span: int) -> bool:
    first = at.replace(second=0, microsecond=0)
    wanted = (hour, minute)
    for back in range(span + 1):
        instant = first - back * MINUTE
        if instant <= at - span * MINUTE:
            break
        local = instant.astimezone(tz)
        before = (instant - MINUTE).astimezone(tz)
        now_reads = (local.hour, local.minute)
        if now_reads == wanted and local.fold == 0:
            return True
        # Aware datetimes in one zone subtract as wall-clock times.
        jumped = local - before > MINUTE
        if jumped and (before.hour, before.minute) < wanted < now_reads:
            return True
    return False


@settings(max_examples=1000, deadline=None)
@given(
    hour=st.integers(0, 23),
    minute=st.sampled_from([0, 15, 30, 45, 59]),
    span=st.integers(1, 23 * 60),
    timezone=st.sampled_from(ZONES),
    near=st.sampled_from(TRANSITIONS),
    offset_seconds=st.integers(-2 * 86400, 2 * 86400),
)
def test_a_daily_cron_window_matches_the_wall_clock_around_daylight_saving_changes(
    hour: int, minute: int, span: int, timezone: str, near: datetime, offset_seconds: int
) -> None:
    at = near + timedelta(seconds=offset_seconds)
    window = Cron(f"{minute} {hour} * * *", span * MINUTE, timezone)
    expected = daily_start_oracle(hour, minute, ZoneInfo(timezone), at, span)
    assert window.is_active(at) == expected


@settings(max_examples=200, deadline=None)
@given(
    expression=st.sampled_from(["*/7 * * * *", "0 */3 * * *", "30 1 * * 0", "0 0 1 * *"]),
    span=st.integers(1, 7 * 24 * 60),
    timezone=st.sampled_from(ZONES),
    near=st.sampled_from(TRANSITIONS),
    offset_seconds=st.integers(-3 * 86400, 3 * 86400),
)
def test_a_window_is_active_exactly_for_its_duration_after_each_start(
    expression: str, span: int, timezone: str, near: datetime, offset_seconds: int
) -> None:
    window = Cron(expression, span * MINUTE, timezone)
    at = near + timedelta(seconds=offset_seconds)
    # Active at a moment iff active at the start of its minute (starts are on whole minutes) ...
    minute_start = at.replace(second=0, microsecond=0)
    assert window.is_active(at) == window.is_active(minute_start)
    # ... and a window that is active at a start stays active for the whole duration after it.
    if window.is_active(minute_start) and not window.is_active(minute_start - MINUTE):
        assert window.is_active(minute_start + span * MINUTE - timedelta(microseconds=1))
