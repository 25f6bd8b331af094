"""Per-channel rate limits hold messages back until the one-minute window has room."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from pingtower.notificator.domain.ratelimit import WINDOW, hold_until

NOW = datetime(2026, 11, 29, 4, 0, tzinfo=UTC)
offsets = st.lists(st.integers(min_value=0, max_value=120_000), max_size=30)


def sent_at(milliseconds_ago: list[int]) -> list[datetime]:
    return [NOW - timedelta(milliseconds=ms) for ms in milliseconds_ago]


def test_no_limit_never_holds() -> None:
    assert hold_until(sent_at([0] * 100), NOW, None) is None


def test_a_full_window_holds_until_its_oldest_send_ages_out() -> None:
    sent = sent_at([50_000, 20_000, 10_000])
    assert hold_until(sent, NOW, 3) == NOW - timedelta(seconds=50) + WINDOW
    assert hold_until(sent, NOW, 4) is None


@given(offsets, st.integers(min_value=1, max_value=10))
def test_at_the_hold_time_the_window_has_room(ago: list[int], limit: int) -> None:
    sent = sent_at(ago)
    until = hold_until(sent, NOW, limit)
    if until is None:
        assert sum(1 for t in sent if t > NOW - WINDOW) < limit
    else:
        assert NOW < until <= NOW + WINDOW
        assert hold_until(sent, until, limit) is None
