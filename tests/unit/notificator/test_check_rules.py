"""Latency and certificate-expiry rules, decided from each check result."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from pingtower.notificator.domain.check_rules import (
    CertState,
    CheckSample,
    LatencyChange,
    LatencyState,
    RuleCheckState,
    cert_step,
    latency_step,
)

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
THRESHOLD = 500.0


def check(latency_ms: float | None, *, ok: bool = True, minute: int = 0) -> CheckSample:
    return CheckSample(T0 + timedelta(minutes=minute), ok, latency_ms)


def run_latency(samples: list[CheckSample], checks: int = 3) -> list[LatencyChange | None]:
    state, changes = LatencyState(), []
    for sample in samples:
        state, change = latency_step(state, sample, THRESHOLD, checks)
        changes.append(change)
    return changes


def test_latency_alert_opens_on_the_third_slow_check_in_a_row() -> None:
    changes = run_latency([check(800), check(900), check(700)])
    assert changes == [None, None, LatencyChange.OPEN]


def test_a_fast_check_breaks_the_run_of_slow_checks() -> None:
    changes = run_latency([check(800), check(900), check(100), check(800), check(900)])
    assert LatencyChange.OPEN not in changes


def test_latency_alert_resolves_at_the_first_fast_check_and_opens_only_once() -> None:
    changes = run_latency([check(800)] * 5 + [check(120)] + [check(90)])
    assert changes == [None, None, LatencyChange.OPEN, None, None, LatencyChange.RESOLVE, None]


def test_failed_checks_neither_count_as_slow_nor_break_the_run() -> None:
    failed = check(None, ok=False)
    failed_with_time = check(9000, ok=False)
    changes = run_latency([check(800), failed, failed_with_time, check(800), check(800)])
    assert changes[-1] is LatencyChange.OPEN
    assert changes[:-1] == [None] * 4


def test_exactly_the_threshold_is_not_slow() -> None:
    assert run_latency([check(THRESHOLD)] * 3) == [None] * 3


@given(
    st.lists(st.one_of(st.none(), st.floats(0, 2000)), max_size=60),
    st.integers(1, 5),
)
def test_latency_alert_opens_exactly_when_n_slow_successes_follow_no_fast_one(
    latencies: list[float | None], checks: int
) -> None:
    samples = [check(ms, ok=ms is not None) for ms in latencies]
    changes = run_latency(samples, checks)
    alerting, streak = False, 0
    for ms, change in zip(latencies, changes, strict=True):
        if ms is None:
            assert change is None
            continue
        if ms > THRESHOLD:
            streak += 1
            expected = LatencyChange.OPEN if not alerting and streak >= checks else None
            alerting = alerting or streak >= checks
        else:
            expected = LatencyChange.RESOLVE if alerting else None
            alerting, streak = False, 0
        assert change is expected
    # Opens and resolves alternate, starting with an open.
    moves = [c for c in changes if c is not None]
    assert all(m is (LatencyChange.OPEN if i % 2 == 0 else LatencyChange.RESOLVE)
               for i, m in enumerate(moves))  # fmt: skip


def test_a_certificate_within_seven_days_is_told_once_for_the_seven_day_threshold() -> None:
    expiry = T0 + timedelta(days=6)
    state, notices = CertState(), []
    for hour in range(48):  # a check every hour for two days
        sample = CheckSample(T0 + timedelta(hours=hour), True, 50, expiry)
        outcome = cert_step(state, sample, (30, 7, 1))
        state = outcome.state
        notices.append(outcome.notice)
    told = [n for n in notices if n is not None]
    assert [n.threshold_days for n in told] == [7]
    assert told[0].expires_at == expiry
    assert 5.9 < told[0].days_left <= 6


def test_each_threshold_is_told_once_as_the_certificate_comes_within_it() -> None:
    expiry = T0 + timedelta(days=40)
    state, told = CertState(), []
    for day in range(0, 41):
        outcome = cert_step(
            state, CheckSample(T0 + timedelta(days=day), True, 1, expiry), (30, 7, 1)
        )
        state = outcome.state
        if outcome.notice:
            told.append((day, outcome.notice.threshold_days))
    assert told == [(10, 30), (33, 7), (39, 1)]


def test_a_renewed_certificate_starts_afresh_and_closes_the_old_warning() -> None:
    old = T0 + timedelta(days=5)
    first = cert_step(CertState(), CheckSample(T0, True, 1, old), (7,))
    assert first.notice is not None
    assert not first.renewed
    new = T0 + timedelta(days=90)
    renewed = cert_step(first.state, CheckSample(T0 + timedelta(hours=1), True, 1, new), (7,))
    assert renewed.renewed
    assert renewed.notice is None
    assert renewed.state == CertState()  # far from expiry: nothing kept


def test_a_certificate_far_from_expiry_keeps_no_state() -> None:
    far = CheckSample(T0, True, 1, T0 + timedelta(days=200))
    assert cert_step(CertState(), far, (30, 7)).state == CertState()


def test_a_result_without_a_certificate_changes_nothing() -> None:
    state = CertState(T0 + timedelta(days=3), 7)
    outcome = cert_step(state, CheckSample(T0, False, None, None), (7,))
    assert outcome.state == state
    assert outcome.notice is None
    assert not outcome.renewed


@given(
    st.lists(st.floats(-5, 60), min_size=1, max_size=40),
    st.sets(st.integers(0, 45), min_size=1, max_size=4),
)
def test_never_two_notices_for_one_certificate_and_threshold(
    days_left: list[float], thresholds: set[int]
) -> None:
    expiry = T0 + timedelta(days=100)
    state, told = CertState(), []
    for remaining in sorted(days_left, reverse=True):  # time goes on: fewer days left
        sample = CheckSample(expiry - timedelta(days=remaining), True, 1, expiry)
        outcome = cert_step(state, sample, thresholds)
        state = outcome.state
        if outcome.notice is not None:
            assert outcome.notice.days_left <= outcome.notice.threshold_days
            told.append(outcome.notice.threshold_days)
    assert len(told) == len(set(told))
    assert told == sorted(told, reverse=True)


def test_the_stored_state_round_trips() -> None:
    state = RuleCheckState(LatencyState(2, True), CertState(T0, 7))
    assert RuleCheckState.load(state.dump()) == state
    assert RuleCheckState.load(None).empty
