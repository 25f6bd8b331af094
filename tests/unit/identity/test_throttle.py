"""Login throttling: a few free failures, then a doubling lockout, per key."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pingtower.identity.domain.throttle import LoginThrottle, ThrottlePolicy

POLICY = ThrottlePolicy(
    free_failures=5, base_seconds=30, max_seconds=900, forget_after_seconds=3600
)


def test_four_failures_do_not_lock_the_fifth_does() -> None:
    throttle = LoginThrottle(POLICY)
    for second in range(4):
        throttle.failed("user:alice", float(second))
        assert throttle.retry_after("user:alice", float(second)) == 0
    throttle.failed("user:alice", 4.0)
    assert throttle.retry_after("user:alice", 4.0) == 30


def test_each_failure_after_the_lockout_doubles_the_wait() -> None:
    assert [POLICY.lockout_seconds(n) for n in range(4, 10)] == [0, 30, 60, 120, 240, 480]
    assert POLICY.lockout_seconds(10) == 900  # capped
    assert POLICY.lockout_seconds(10_000) == 900


def test_the_lockout_runs_out_with_time() -> None:
    throttle = LoginThrottle(POLICY)
    for _ in range(5):
        throttle.failed("address:10.0.0.1", 100.0)
    assert throttle.retry_after("address:10.0.0.1", 110.0) == 20
    assert throttle.retry_after("address:10.0.0.1", 130.0) == 0


def test_a_failure_after_the_lockout_locks_again_for_longer() -> None:
    throttle = LoginThrottle(POLICY)
    for _ in range(5):
        throttle.failed("user:bob", 0.0)
    throttle.failed("user:bob", 30.0)  # the sixth failure, once allowed to try again
    assert throttle.retry_after("user:bob", 30.0) == 60


def test_success_clears_the_count() -> None:
    throttle = LoginThrottle(POLICY)
    for _ in range(4):
        throttle.failed("user:carol", 0.0)
    throttle.succeeded("user:carol")
    throttle.failed("user:carol", 1.0)
    assert throttle.retry_after("user:carol", 1.0) == 0


def test_keys_are_counted_apart() -> None:
    throttle = LoginThrottle(POLICY)
    for _ in range(5):
        throttle.failed("user:dave", 0.0)
    assert throttle.retry_after("user:dave", 0.0) > 0
    assert throttle.retry_after("user:erin", 0.0) == 0


def test_a_long_quiet_key_starts_afresh() -> None:
    throttle = LoginThrottle(POLICY)
    for _ in range(4):
        throttle.failed("user:frank", 0.0)
    throttle.failed("user:frank", 3600.0)  # the old four are forgotten: this is failure one
    assert throttle.retry_after("user:frank", 3600.0) == 0


def test_memory_is_bounded_and_the_longest_idle_key_goes_first() -> None:
    throttle = LoginThrottle(POLICY, max_keys=3)
    for n, key in enumerate(["a", "b", "c", "d"]):
        for _ in range(5):
            throttle.failed(key, float(n))
    assert throttle.retry_after("a", 4.0) == 0  # forgotten
    assert all(throttle.retry_after(key, 4.0) > 0 for key in ["b", "c", "d"])


@given(st.integers(min_value=0, max_value=500), st.integers(min_value=0, max_value=500))
def test_lockout_never_shrinks_with_more_failures(a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert POLICY.lockout_seconds(low) <= POLICY.lockout_seconds(high)


@given(st.integers(min_value=0, max_value=10_000))
def test_lockout_is_zero_before_the_free_failures_and_capped_after(failures: int) -> None:
    seconds = POLICY.lockout_seconds(failures)
    if failures < POLICY.free_failures:
        assert seconds == 0
    else:
        assert POLICY.base_seconds <= seconds <= POLICY.max_seconds


@given(
    st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), min_size=1, max_size=30),
    st.floats(min_value=0, max_value=5000, allow_nan=False),
)
def test_retry_after_never_exceeds_the_cap(gaps: list[float], later: float) -> None:
    throttle = LoginThrottle(POLICY)
    now = 0.0
    for gap in gaps:
        now += gap
        throttle.failed("k", now)
    wait = throttle.retry_after("k", now + later)
    assert 0 <= wait <= POLICY.max_seconds
