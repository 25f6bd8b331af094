"""Login throttling: after a few free failures, each further failure doubles the wait.

Counted per key (a username, a client address), so guessing one account's password is slow
from anywhere, and one address cannot spray guesses over many accounts. Pure: the caller
passes the time (monotonic seconds), which keeps the maths testable.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class ThrottlePolicy:
    free_failures: int = 5
    base_seconds: float = 30.0
    max_seconds: float = 900.0
    # A key that has not failed for this long starts afresh; also bounds what is remembered.
    forget_after_seconds: float = 3600.0

    def lockout_seconds(self, failures: int) -> float:
        """How long a key is locked after its `failures`-th consecutive failure."""
        if failures < self.free_failures:
            return 0.0
        exponent = min(failures - self.free_failures, 64)  # 2**64 already exceeds any cap
        return float(min(self.max_seconds, self.base_seconds * 2.0**exponent))


@dataclass(frozen=True)
class _Record:
    failures: int
    last_failure: float


class LoginThrottle:
    """Failure counts per key, kept in memory (the embedded mode is one process). At most
    `max_keys` keys are remembered; the longest idle are forgotten first."""

    def __init__(self, policy: ThrottlePolicy | None = None, *, max_keys: int = 10_000) -> None:
        self.policy = policy or ThrottlePolicy()
        self.max_keys = max_keys
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until `key` may try again; 0 when it may try now."""
        record = self._current(key, now)
        if record is None:
            return 0.0
        lockout = self.policy.lockout_seconds(record.failures)
        elapsed = max(0.0, now - record.last_failure)
        return max(0.0, lockout - elapsed)

    def failed(self, key: str, now: float) -> None:
        record = self._current(key, now)
        failures = 1 if record is None else record.failures + 1
        self._records[key] = _Record(failures, now)
        self._records.move_to_end(key)
        while len(self._records) > self.max_keys:
            self._records.popitem(last=False)

    def succeeded(self, key: str) -> None:
        self._records.pop(key, None)

    def _current(self, key: str, now: float) -> _Record | None:
        record = self._records.get(key)
        if record is None:
            return None
        if now - record.last_failure >= self.policy.forget_after_seconds:
            del self._records[key]
            return None
        return record
