"""Retry timing: exponential ceiling, full jitter, a cap, and a limit on attempts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pingtower.notificator.domain.backoff import backoff_ceiling, retry_delay, should_retry

attempts = st.integers(min_value=1, max_value=10_000)
bases = st.floats(min_value=0.001, max_value=60)
fractions = st.floats(min_value=0, max_value=1, exclude_max=True)


def test_the_ceiling_doubles_per_attempt() -> None:
    assert [backoff_ceiling(n, 2.0) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]


@given(attempts, bases, fractions)
def test_a_delay_lies_between_zero_and_the_capped_ceiling(
    attempt: int, base: float, fraction: float
) -> None:
    delay = retry_delay(attempt, base, cap=600, random=lambda: fraction)
    assert 0 <= delay <= min(600, base * 2 ** min(attempt - 1, 62))


@given(st.integers(min_value=1, max_value=60), bases)
def test_the_ceiling_never_decreases(attempt: int, base: float) -> None:
    assert backoff_ceiling(attempt + 1, base) >= backoff_ceiling(attempt, base)


def test_full_jitter_spans_the_whole_range() -> None:
    assert retry_delay(3, 1.0, random=lambda: 0.0) == 0.0
    assert retry_delay(3, 1.0, random=lambda: 0.5) == 2.0


def test_attempt_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="start at 1"):
        backoff_ceiling(0, 1.0)


def test_retries_stop_at_the_limit_or_on_a_permanent_failure() -> None:
    assert should_retry(1, 3)
    assert should_retry(2, 3)
    assert not should_retry(3, 3)
    assert not should_retry(1, 3, permanent=True)
