"""How many of a channel's waiting messages its rate limit lets go at once.

The worker sends several messages of one channel concurrently, so it cannot ask "may one more
go?" after each send: it asks once for the whole batch, reserves that many slots in the
channel's window before sending, and holds the rest until a slot frees. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pingtower.notificator.domain.ratelimit import WINDOW, hold_until


@dataclass(frozen=True)
class Admission:
    count: int  # how many of the messages may go now (the first ones)
    rest_due: datetime | None  # when the others may go; None when all may go now


def admit(sent: Sequence[datetime], now: datetime, limit: int | None, wanted: int) -> Admission:
    """`sent`: when messages went to the channel (any order, older ones ignored); `limit`:
    messages per window (None: unlimited); `wanted`: messages waiting to go now."""
    if limit is None:
        return Admission(wanted, None)
    recent = [t for t in sent if t > now - WINDOW]
    count = max(0, min(wanted, limit - len(recent)))
    if count == wanted:
        return Admission(count, None)
    # The admitted ones fill the window at `now`; the rest waits for the first slot to free.
    return Admission(count, hold_until([*recent, *([now] * count)], now, limit))
