"""A channel's rate limit, asked once for a batch of messages: how many go now, when the rest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from pingtower.notificator.delivery.admission import Admission, admit
from pingtower.notificator.domain.ratelimit import WINDOW, hold_until

NOW = datetime(2026, 11, 29, 4, 0, tzinfo=UTC)
offsets = st.lists(st.integers(min_value=0, max_value=120_000), max_size=30)


def sent_at(milliseconds_ago: list[int]) -> list[datetime]:
    return [NOW - timedelta(milliseconds=ms) for ms in milliseconds_ago]


def test_no_limit_lets_every_message_go() -> None:
    assert admit(sent_at([0] * 100), NOW, None, 40) == Admission(40, None)


def test_a_partly_used_window_admits_what_is_left_and_holds_the_rest() -> None:
    sent = sent_at([50_000, 20_000, 70_000])  # the last one is out of the window already
    assert admit(sent, NOW, 5, 2) == Admission(2, None)
    # Three free slots: three go now; the window is then full until its oldest send ages out.
    assert admit(sent, NOW, 5, 10) == Admission(3, NOW - timedelta(seconds=50) + WINDOW)


def test_a_full_window_admits_nothing() -> None:
    sent = sent_at([10_000, 5_000])
    assert admit(sent, NOW, 2, 4) == Admission(0, NOW - timedelta(seconds=10) + WINDOW)


def test_a_lowered_limit_admits_nothing_until_the_window_drains_below_it() -> None:
    sent = sent_at([40_000, 30_000, 20_000, 10_000])
    assert admit(sent, NOW, 2, 1) == Admission(0, NOW - timedelta(seconds=20) + WINDOW)


@given(offsets, st.integers(min_value=1, max_value=10), st.integers(min_value=1, max_value=20))
def test_the_admitted_fit_the_window_and_the_rest_find_room_when_due(
    ago: list[int], limit: int, wanted: int
) -> None:
    sent = sent_at(ago)
    admission = admit(sent, NOW, limit, wanted)
    in_window = sum(1 for t in sent if t > NOW - WINDOW)
    assert 0 <= admission.count <= wanted
    assert in_window + admission.count <= max(limit, in_window)
    after = [*sent, *([NOW] * admission.count)]
    if admission.rest_due is None:
        assert admission.count == wanted
    else:
        assert admission.count == max(0, limit - in_window)
        assert NOW < admission.rest_due <= NOW + WINDOW
        assert hold_until(after, admission.rest_due, limit) is None
