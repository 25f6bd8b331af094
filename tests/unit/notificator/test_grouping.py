"""Grouping: which claimed rows go out as one message, and how a group reads."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pingtower.notificator.domain.grouping import partition, summarise
from pingtower.notificator.rendering import render_group

keys = st.one_of(st.none(), st.sampled_from(["a", "b", "c"]))


@given(st.lists(keys, max_size=40))
def test_partition_keeps_every_item_once_and_groups_only_equal_keys(
    items: list[str | None],
) -> None:
    indexed = list(enumerate(items))
    groups = partition(indexed, lambda pair: pair[1])
    assert sorted(i for group in groups for i, _ in group) == list(range(len(items)))
    for group in groups:
        assert len({key for _, key in group}) == 1
        if group[0][1] is None:
            assert len(group) == 1
    assert len(groups) == len({k for k in items if k is not None}) + items.count(None)


def test_a_summary_names_the_first_monitors_and_counts_the_rest() -> None:
    assert summarise(["a", "b"]) == "a, b"
    assert summarise([f"m{i}" for i in range(25)], shown=3) == "m0, m1, m2 and 22 more"


def test_a_grouped_message_counts_lists_and_carries_every_item() -> None:
    contexts = [
        {
            "monitor": {"id": str(i), "name": f"svc-{i}", "target": f"https://h/{i}"},
            "since": "2026-11-29T03:00:00+00:00",
            "error": "refused",
            "link": None,
        }
        for i in range(15)
    ]
    message = render_group("down", contexts)
    assert message.title == "DOWN: 15 monitors"
    assert message.text.startswith("svc-0, svc-1")
    assert "- svc-0 (https://h/0) is DOWN since 2026-11-29 03:00:00 UTC." in message.text
    assert message.text.endswith("... and 5 more")
    assert message.data["count"] == 15
    assert len(message.data["items"]) == 15
