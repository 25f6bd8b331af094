"""Per-channel rate limits: a sliding window of one minute. A message over the limit is held
until the oldest send in the window ages out; it is never dropped."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

WINDOW = timedelta(minutes=1)


def hold_until(sent: Sequence[datetime], now: datetime, limit: int | None) -> datetime | None:
    """When the next message may go, or None if it may go now.

    `sent`: when messages went to the channel (any order; older ones are ignored).
    """
    if limit is None:
        return None
    recent = sorted(t for t in sent if t > now - WINDOW)
    if len(recent) < limit:
        return None
    # The window frees a slot when the oldest send that keeps it full ages out.
    return recent[len(recent) - limit] + WINDOW
