"""Retry timing: exponential backoff with full jitter.

Full jitter (a uniform delay between zero and the exponential ceiling) spreads the retries of
many failed deliveries to one recovering receiver, instead of hitting it in synchronised waves.
"""

from __future__ import annotations

from collections.abc import Callable

DEFAULT_CAP_SECONDS = 600.0


def backoff_ceiling(attempt: int, base: float, cap: float = DEFAULT_CAP_SECONDS) -> float:
    """Upper bound of the wait after failed attempt number `attempt` (1-based)."""
    if attempt < 1:
        raise ValueError("attempt numbers start at 1")
    # Cap the exponent so a large attempt number cannot overflow a float.
    return min(cap, base * 2.0 ** min(attempt - 1, 62))


def retry_delay(
    attempt: int,
    base: float,
    *,
    cap: float = DEFAULT_CAP_SECONDS,
    random: Callable[[], float],
) -> float:
    """Seconds to wait before the next attempt, drawn uniformly in [0, ceiling].

    `random` returns a float in [0, 1); it is injected so tests can pin it.
    """
    return backoff_ceiling(attempt, base, cap) * random()


def should_retry(attempt: int, max_attempts: int, *, permanent: bool = False) -> bool:
    """After failed attempt `attempt`, is another one allowed?"""
    return not permanent and attempt < max_attempts
