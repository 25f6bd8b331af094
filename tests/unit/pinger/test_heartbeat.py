"""When a heartbeat is late, and how often its lateness is reported."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from pingtower.pinger.domain.heartbeat import HeartbeatState, lateness

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
