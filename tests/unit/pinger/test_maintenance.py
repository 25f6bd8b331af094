"""Maintenance windows: when they are active, and what they do to the status machine."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pingtower.common.events import Outcome, Status
from pingtower.pinger.domain.maintenance import OneOff, Weekly, in_maintenance
from pingtower.pinger.domain.monitor import InvalidSettingError
from pingtower.pinger.domain.status import (
    Confirmation,
    MonitorState,
    Observation,
    apply_result,
)

T0 = datetime(2026, 11, 29, 12, tzinfo=UTC)  # a Sunday


def test_a_one_off_window_is_active_from_its_start_to_its_end() -> None:
    window = OneOff(T0, T0 + timedelta(hours=1))
    assert not window.is_active(T0 - timedelta(seconds=1))
    assert window.is_active(T0)
    assert window.is_active(T0 + timedelta(minutes=59))
    assert not window.is_active(T0 + timedelta(hours=1))


def test_a_one_off_window_must_end_after_it_starts() -> None:
    with pytest.raises(InvalidSettingError) as error:
        OneOff(T0, T0)
    assert error.value.field == "ends_at"


def test_a_weekly_window_follows_local_wall_clock_time() -> None:
    # Sundays 02:00-04:00 in Berlin: 01:00-03:00 UTC in winter, 00:00-02:00 UTC in summer.
    window = Weekly(frozenset({6}), time(2), timedelta(hours=2), "Europe/Berlin")
    winter_sunday = datetime(2026, 11, 29, tzinfo=UTC)
    assert window.is_active(winter_sunday.replace(hour=1, minute=30))
    assert not window.is_active(winter_sunday.replace(hour=0, minute=30))
    summer_sunday = datetime(2026, 7, 5, tzinfo=UTC)
    assert window.is_active(summer_sunday.replace(hour=0, minute=30))
    assert not window.is_active(summer_sunday.replace(hour=2, minute=30))
    monday = datetime(2026, 11, 30, 1, 30, tzinfo=UTC)
    assert not window.is_active(monday)


def test_a_weekly_window_can_run_past_midnight() -> None:
    window = Weekly(frozenset({5}), time(23), timedelta(hours=3), "UTC")  # Saturday 23:00
    assert window.is_active(datetime(2026, 11, 29, 1, tzinfo=UTC))  # Sunday 01:00
    assert not window.is_active(datetime(2026, 11, 29, 2, tzinfo=UTC))


def test_weekly_window_validation_names_the_field() -> None:
    with pytest.raises(InvalidSettingError) as error:
        Weekly(frozenset({7}), time(1), timedelta(hours=1), "UTC")
    assert error.value.field == "days"
    with pytest.raises(InvalidSettingError) as error:
        Weekly(frozenset({1}), time(1), timedelta(hours=1), "Mars/Olympus")
    assert error.value.field == "timezone"
    with pytest.raises(InvalidSettingError) as error:
        Weekly(frozenset({1}), time(1), timedelta(days=8), "UTC")
    assert error.value.field == "duration_minutes"


def test_no_window_means_no_maintenance() -> None:
    assert not in_maintenance([], T0)


def apply(
    state: MonitorState, outcome: Outcome, second: int, *, maintenance: bool
) -> tuple[MonitorState, bool, bool]:
    decision = apply_result(
        state,
        Observation(outcome, T0 + timedelta(seconds=second)),
        Confirmation(2, 1),
        incident_id=uuid.uuid4(),
        in_maintenance=maintenance,
    )
    return decision.state, decision.opened is not None, decision.resolved is not None


def test_failures_during_maintenance_open_no_incident() -> None:
    state = MonitorState()
    for second in range(5):
        state, opened, _ = apply(state, Outcome.DOWN, second, maintenance=True)
        assert not opened
    assert state.status == Status.MAINTENANCE
    state, opened, _ = apply(state, Outcome.DOWN, 6, maintenance=False)
    assert state.status == Status.PENDING  # counting starts afresh after the window
    state, opened, _ = apply(state, Outcome.DOWN, 7, maintenance=False)
    assert state.status == Status.DOWN
    assert opened


def test_an_outage_open_before_the_window_is_still_open_after_it() -> None:
    state = MonitorState()
    for second in range(2):
        state, _, _ = apply(state, Outcome.DOWN, second, maintenance=False)
    incident = state.incident
    state, _, resolved = apply(state, Outcome.UP, 2, maintenance=True)
    assert not resolved
    assert state.incident == incident
    state, opened, _ = apply(state, Outcome.DOWN, 3, maintenance=False)
    assert state.status == Status.DOWN
    assert not opened
    state, _, resolved = apply(state, Outcome.UP, 4, maintenance=False)
    assert resolved
    assert state.status == Status.UP


@given(st.lists(st.tuples(st.sampled_from(list(Outcome)), st.booleans()), max_size=50))
def test_nothing_opens_or_closes_during_maintenance(steps: list[tuple[Outcome, bool]]) -> None:
    state = MonitorState()
    for second, (outcome, maintenance) in enumerate(steps):
        before = state.incident
        state, opened, resolved = apply(state, outcome, second, maintenance=maintenance)
        if maintenance:
            assert not opened
            assert not resolved
            assert state.status == Status.MAINTENANCE
            assert state.incident == before
        if state.incident is not None:
            assert state.status in (Status.DOWN, Status.MAINTENANCE)
