"""Grouping: the messages of one rule to one channel that wait together go out as one.

`partition` splits a claimed batch into what is sent as one message: rows with a group key
gather by (channel, kind, group key); every other row stands alone.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

T = TypeVar("T")


def partition(items: Sequence[T], key: Callable[[T], Hashable | None]) -> list[list[T]]:
    """Groups in first-seen order; items whose key is None each form their own group."""
    groups: dict[Hashable, list[T]] = {}
    order: list[list[T]] = []
    for item in items:
        k = key(item)
        if k is None:
            order.append([item])
            continue
        if k not in groups:
            groups[k] = []
            order.append(groups[k])
        groups[k].append(item)
    return order


def summarise(names: Sequence[str], *, shown: int = 20) -> str:
    """ "a, b, c and 7 more" for a message's first line."""
    listed = ", ".join(names[:shown])
    hidden = len(names) - shown
    return f"{listed} and {hidden} more" if hidden > 0 else listed
