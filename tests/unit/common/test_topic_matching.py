"""AMQP topic matching, as RabbitMQ does it: `*` is exactly one word, `#` zero or more."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pingtower.common.messaging.bus import topic_matches

WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=8)
WORDS = st.lists(WORD, min_size=1, max_size=6)


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("monitor.created", "monitor.created", True),
        ("monitor.created", "monitor.updated", False),
        ("monitor.*", "monitor.created", True),
        ("monitor.*", "monitor.status_changed", True),
        ("monitor.*", "monitor", False),
        ("monitor.*", "monitor.status.changed", False),
        ("monitor.#", "monitor", True),
        ("monitor.#", "monitor.status.changed", True),
        ("monitor.#", "monitors.created", False),
        ("#", "check.completed", True),
        ("#.completed", "check.completed", True),
        ("#.completed", "completed", True),
        ("#.completed", "check.completed.late", False),
        ("*.completed", "check.completed", True),
        ("*.completed", "completed", False),
        ("check.#.late", "check.late", True),
        ("check.#.late", "check.a.b.late", True),
        ("*", "check.completed", False),
        ("incident.*", "monitor.created", False),
    ],
)
def test_topic_patterns_match_like_rabbitmq(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected


@given(WORDS)
def test_a_key_always_matches_itself(words: list[str]) -> None:
    key = ".".join(words)
    assert topic_matches(key, key)


@given(WORDS)
def test_hash_matches_every_key(words: list[str]) -> None:
    assert topic_matches("#", ".".join(words))


@given(WORDS, st.data())
def test_any_word_can_be_replaced_by_a_star(words: list[str], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(words) - 1))
    pattern = [*words[:index], "*", *words[index + 1 :]]
    assert topic_matches(".".join(pattern), ".".join(words))


@given(WORDS, st.integers(1, 6))
def test_stars_match_only_keys_with_as_many_words(words: list[str], stars: int) -> None:
    pattern = ".".join(["*"] * stars)
    assert topic_matches(pattern, ".".join(words)) is (len(words) == stars)


@given(WORDS, st.data())
def test_hash_stands_for_any_run_of_words(words: list[str], data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(words)))
    end = data.draw(st.integers(start, len(words)))
    pattern = [*words[:start], "#", *words[end:]]
    assert topic_matches(".".join(pattern), ".".join(words))


@given(WORDS, WORD)
def test_a_literal_pattern_never_matches_a_key_with_another_word(
    words: list[str], other: str
) -> None:
    changed = [*words[:-1], other]
    assert topic_matches(".".join(words), ".".join(changed)) is (other == words[-1])
