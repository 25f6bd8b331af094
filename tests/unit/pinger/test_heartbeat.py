"""When a heartbeat is late (a period or a cron schedule in a time zone), how often its
lateness is reported, and when the watcher must look at it next."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from pingtower.pinger.domain.heartbeat import (
    CronSchedule,
    HeartbeatState,
    deadline,
    expected_after,
    expected_of,
    grace_of,
    lateness,
    next_check,
    reported,
)

T0 = datetime(2026, 11, 29, tzinfo=UTC)
PERIOD = timedelta(minutes=5)
GRACE = timedelta(minutes=1)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_a_heartbeat_is_on_time_within_period_and_grace() -> None:
    state = HeartbeatState(T0, at(0), None, None)
    assert lateness(state, at(5.9), PERIOD, GRACE) is None
    late = lateness(state, at(6), PERIOD, GRACE)
    assert late is not None
    assert late.kind == "heartbeat_missed"
    assert late.deadline == at(6)


def test_a_new_heartbeat_counts_from_its_creation() -> None:
    state = HeartbeatState(T0, None, None, None)
    assert lateness(state, at(5), PERIOD, GRACE) is None
    assert lateness(state, at(6.5), PERIOD, GRACE) is not None


def test_a_run_that_does_not_finish_within_the_grace_time_is_late() -> None:
    state = HeartbeatState(T0, at(0), at(2), None)
    assert lateness(state, at(2.5), PERIOD, GRACE) is None
    late = lateness(state, at(3), PERIOD, GRACE)
    assert late is not None
    assert late.kind == "heartbeat_run_too_long"


def test_lateness_is_reported_once_per_period() -> None:
    state = HeartbeatState(T0, at(0), None, at(6))
    assert lateness(state, at(7), PERIOD, GRACE) is None
    assert lateness(state, at(11), PERIOD, GRACE) is not None


def test_a_ping_after_a_reported_lateness_starts_a_new_period() -> None:
    state = HeartbeatState(T0, at(8), None, at(6))
    assert lateness(state, at(13.9), PERIOD, GRACE) is None
    assert lateness(state, at(14), PERIOD, GRACE) is not None


@given(
    st.floats(min_value=0, max_value=100),
    st.floats(min_value=0, max_value=100),
)
def test_never_late_before_period_plus_grace_after_the_last_ping(
    ping: float, elapsed: float
) -> None:
    state = HeartbeatState(T0, at(ping), None, None)
    late = lateness(state, at(ping + elapsed), PERIOD, GRACE)
    assert (late is not None) == (timedelta(minutes=elapsed) >= PERIOD + GRACE)


# --- cron schedules ------------------------------------------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
HOUR = timedelta(hours=1)


def test_a_cron_heartbeat_is_due_at_the_first_run_after_its_last_ping_plus_grace() -> None:
    nightly = CronSchedule("0 9 * * *", "America/New_York")
    pinged = datetime(2026, 11, 29, 9, 30, tzinfo=NEW_YORK)  # half an hour after today's run
    state = HeartbeatState(T0, pinged, None, None)
    due, kind = deadline(state, nightly, GRACE)
    assert kind == "heartbeat_missed"
    assert due == datetime(2026, 11, 30, 9, 1, tzinfo=NEW_YORK)
    assert lateness(state, due - timedelta(seconds=1), nightly, GRACE) is None
    late = lateness(state, due, nightly, GRACE)
    assert late is not None
    assert late.deadline == due
    assert "cron" in late.message


def test_a_cron_heartbeat_that_never_pinged_counts_from_its_creation() -> None:
    every_quarter = CronSchedule("*/15 * * * *", "UTC")
    state = HeartbeatState(at(2), None, None, None)
    assert deadline(state, every_quarter, GRACE) == (at(16), "heartbeat_missed")


def test_a_cron_run_that_does_not_finish_within_the_grace_time_is_late() -> None:
    nightly = CronSchedule("0 3 * * *", "UTC")
    started = T0 + 3 * HOUR - timedelta(seconds=30)  # today's run, yesterday's pinged
    state = HeartbeatState(T0, T0 - 21 * HOUR, started, None)
    assert lateness(state, started + GRACE - timedelta(seconds=1), nightly, GRACE) is None
    late = lateness(state, started + GRACE, nightly, GRACE)
    assert late is not None
    assert late.kind == "heartbeat_run_too_long"


def test_a_daily_run_that_daylight_saving_skips_is_expected_when_the_clock_resumes() -> None:
    # 02:30 does not exist in Berlin on 29 March 2026 (02:00 CET becomes 03:00 CEST).
    at_half_past_two = CronSchedule("30 2 * * *", "Europe/Berlin")
    pinged = datetime(2026, 3, 28, 2, 35, tzinfo=BERLIN)
    due, _ = deadline(HeartbeatState(T0, pinged, None, None), at_half_past_two, GRACE)
    assert due == datetime(2026, 3, 29, 3, 0, tzinfo=BERLIN) + GRACE
    assert due - pinged == timedelta(hours=23, minutes=26)  # 24 h of wall clock less the hour


def test_a_daily_run_on_the_day_the_clock_goes_back_is_expected_once_in_wall_clock_time() -> None:
    at_half_past_two = CronSchedule("30 2 * * *", "Europe/Berlin")
    pinged = datetime(2026, 10, 24, 2, 35, tzinfo=BERLIN)
    state = HeartbeatState(T0, pinged, None, None)
    due, _ = deadline(state, at_half_past_two, GRACE)
    assert due == datetime(2026, 10, 25, 0, 31, tzinfo=UTC)  # 02:30 summer time, the first
    # Pinged at that first 02:30: the next run is the next day's, 25 hours later, not the
    # repeated 02:30 an hour after.
    pinged = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    due, _ = deadline(HeartbeatState(T0, pinged, None, None), at_half_past_two, GRACE)
    assert due == datetime(2026, 10, 26, 1, 31, tzinfo=UTC)


def test_an_hourly_heartbeat_expects_both_repeated_hours_when_the_clock_goes_back() -> None:
    hourly = CronSchedule("0 * * * *", "Europe/Berlin")
    first_two_ten = datetime(2026, 10, 25, 0, 10, tzinfo=UTC)  # 02:10 summer time
    due, _ = deadline(HeartbeatState(T0, first_two_ten, None, None), hourly, GRACE)
    assert due == datetime(2026, 10, 25, 1, 1, tzinfo=UTC)  # 02:00 winter time, plus grace
    second_two_ten = datetime(2026, 10, 25, 1, 10, tzinfo=UTC)  # 02:10 winter time
    due, _ = deadline(HeartbeatState(T0, second_two_ten, None, None), hourly, GRACE)
    assert due == datetime(2026, 10, 25, 2, 1, tzinfo=UTC)  # 03:00 winter time


def test_a_late_cron_heartbeat_is_reported_again_at_the_next_runs_deadline() -> None:
    nightly = CronSchedule("0 3 * * *", "UTC")
    state = HeartbeatState(T0, None, None, None)
    first = T0 + 3 * HOUR + GRACE
    assert lateness(state, first, nightly, GRACE) is not None
    reported_state = reported(state, first + timedelta(seconds=30))
    tomorrow = first + timedelta(days=1)
    assert lateness(reported_state, tomorrow - timedelta(seconds=1), nightly, GRACE) is None
    assert next_check(reported_state, first + HOUR, nightly, GRACE) == tomorrow
    assert lateness(reported_state, tomorrow, nightly, GRACE) is not None


def test_the_monitor_says_which_expectation_applies() -> None:
    assert expected_of(300, None, "UTC") == timedelta(minutes=5)
    assert expected_of(300, "0 3 * * *", "Europe/Berlin") == CronSchedule(
        "0 3 * * *", "Europe/Berlin"
    )
    assert grace_of({}) == timedelta(seconds=60)
    assert grace_of({"grace_seconds": 5}) == timedelta(seconds=5)


# --- when the watcher looks next: property tests over periods, cron schedules and zones -------

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
CRONS = ["*/15 * * * *", "0 * * * *", "30 2 * * *", "0 9 * * 1-5", "45 23 * * *", "0 0 1 * *"]
# Around the 2026 changes of Berlin and New York, and Lord Howe's half-hour ones.
MOMENTS = st.datetimes(
    min_value=datetime(2026, 3, 1), max_value=datetime(2026, 11, 30), timezones=st.just(UTC)
)

expectations = st.one_of(
    st.integers(min_value=60, max_value=86_400).map(lambda s: timedelta(seconds=s)),
    st.builds(CronSchedule, st.sampled_from(CRONS), st.sampled_from(ZONES)),
)
graces = st.integers(min_value=1, max_value=7 * 86_400).map(lambda s: timedelta(seconds=s))
offsets = st.integers(min_value=0, max_value=40 * 86_400).map(lambda s: timedelta(seconds=s))


@st.composite
def states_and_now(draw: st.DrawFn) -> tuple[HeartbeatState, datetime]:
    created = draw(MOMENTS)
    last_ping = draw(st.none() | offsets.map(lambda o: created + o))
    started = draw(st.none() | offsets.map(lambda o: created + o))
    latest = max(t for t in (created, last_ping, started) if t is not None)
    now = latest + draw(offsets)
    reported_at = draw(st.none() | st.datetimes(min_value=created.replace(tzinfo=None)))
    if reported_at is not None:
        reported_at = min(reported_at.replace(tzinfo=UTC), now)
    return HeartbeatState(created, last_ping, started, reported_at), now


@settings(max_examples=300, deadline=None)
@given(states_and_now(), expectations, graces, st.floats(min_value=0, max_value=1))
def test_nothing_is_late_before_the_next_check_and_something_is_at_it(
    state_now: tuple[HeartbeatState, datetime],
    expected: CronSchedule | timedelta,
    grace: timedelta,
    fraction: float,
) -> None:
    state, now = state_now
    late = lateness(state, now, expected, grace)
    if late is not None:
        state = reported(state, now)
    look = next_check(state, now, expected, grace)
    assert look > now, "after a look, the next one is later"
    between = now + (look - now) * fraction
    if between < look:
        assert lateness(state, between, expected, grace) is None
    assert lateness(state, look, expected, grace) is not None


@settings(max_examples=100, deadline=None)
@given(
    MOMENTS,
    st.sampled_from(CRONS),
    st.sampled_from(ZONES),
    st.integers(min_value=1, max_value=3600).map(lambda s: timedelta(seconds=s)),
)
def test_a_silent_cron_heartbeat_is_reported_once_at_each_runs_deadline(
    created: datetime, cron: str, zone: str, grace: timedelta
) -> None:
    expected = CronSchedule(cron, zone)
    fires = [expected_after(expected, created)]
    while len(fires) < 6:
        fires.append(expected_after(expected, fires[-1]))
    state = HeartbeatState(created, None, None, None)
    # A watcher that looks exactly when told to.
    reports: list[datetime] = []
    now = created
    while len(reports) < len(fires):
        now = next_check(state, now, expected, grace)
        if lateness(state, now, expected, grace) is not None:
            reports.append(now)
            state = reported(state, now)
    assert reports == [fire + grace for fire in fires]


@settings(max_examples=100, deadline=None)
@given(MOMENTS, st.sampled_from(CRONS), st.sampled_from(ZONES))
def test_cron_runs_follow_the_wall_clock_of_their_zone(
    after: datetime, cron: str, zone: str
) -> None:
    fires = expected_after(CronSchedule(cron, zone), after)
    assert fires > after
    local = fires.astimezone(ZoneInfo(zone))
    minute, hour = cron.split()[:2]
    if minute.isdigit():
        assert local.minute == int(minute)
    if hour.isdigit() and local.hour != int(hour):
        # Only a run that daylight saving skipped moves, to when the clock resumes.
        skipped = datetime(local.year, local.month, local.day, int(hour), int(minute))
        assert skipped.replace(tzinfo=ZoneInfo(zone)).utcoffset() != local.utcoffset()
