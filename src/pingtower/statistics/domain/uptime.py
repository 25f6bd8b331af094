"""Time-weighted uptime from a monitor's status timeline.

A timeline is a list of intervals [start, end) each holding one status. Uptime over a window is
up time / (up time + down time), counting only the parts of intervals inside the window. UP,
DEGRADED and PENDING count as up (PENDING means a failure is not confirmed yet, so the monitor is
not called down); DOWN counts as down; MAINTENANCE, PAUSED and UNKNOWN are left out of both, so a
maintenance window neither helps nor hurts the figure. Durations are kept as timedeltas (integer
microseconds), so splitting a window adds up exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pingtower.common.events import Status

ZERO = timedelta(0)


class Weight(StrEnum):
    UP = "up"
    DOWN = "down"
    EXCLUDED = "excluded"


WEIGHTS: dict[Status, Weight] = {
    Status.UP: Weight.UP,
    Status.DEGRADED: Weight.UP,
    Status.PENDING: Weight.UP,
    Status.DOWN: Weight.DOWN,
    Status.MAINTENANCE: Weight.EXCLUDED,
    Status.PAUSED: Weight.EXCLUDED,
    Status.UNKNOWN: Weight.EXCLUDED,
}


# Copied for each window: iterating the enum itself costs more than the overlaps of a short
# timeline (the overview computes two windows for each of a thousand monitors).
_NOTHING = dict.fromkeys(Weight, ZERO)


@dataclass(frozen=True)
class StatusInterval:
    """The monitor had `status` from `start` until `end` (None: still has it)."""

    start: datetime
    end: datetime | None
    status: Status


@dataclass(frozen=True)
class UptimeFigures:
    up: timedelta
    down: timedelta
    excluded: timedelta

    @property
    def counted(self) -> timedelta:
        return self.up + self.down

    @property
    def ratio(self) -> float | None:
        """Share of counted time that was up; None when no time in the window was counted."""
        if self.counted == ZERO:
            return None
        return self.up / self.counted

    def __add__(self, other: UptimeFigures) -> UptimeFigures:
        return UptimeFigures(
            self.up + other.up, self.down + other.down, self.excluded + other.excluded
        )


def overlap(
    start: datetime, end: datetime | None, window_start: datetime, window_end: datetime
) -> timedelta:
    """Length of [start, end) ∩ [window_start, window_end); an open end reaches the window end."""
    lo = max(start, window_start)
    hi = window_end if end is None else min(end, window_end)
    return max(hi - lo, ZERO)


def uptime(
    intervals: Iterable[StatusInterval], window_start: datetime, window_end: datetime
) -> UptimeFigures:
    """Up, down and excluded time inside [window_start, window_end).

    Time the timeline does not cover (before the first known status) counts nowhere.
    """
    if window_end < window_start:
        raise ValueError("window ends before it starts")
    totals = dict(_NOTHING)
    for interval in intervals:
        totals[WEIGHTS[interval.status]] += overlap(
            interval.start, interval.end, window_start, window_end
        )
    return UptimeFigures(totals[Weight.UP], totals[Weight.DOWN], totals[Weight.EXCLUDED])


def timeline(changes: Iterable[tuple[datetime, Status]]) -> list[StatusInterval]:
    """Intervals from change points: each status lasts until the next change point.

    Change points may come in any order; at equal times the last one given wins.
    """
    latest: dict[datetime, Status] = {}
    for at, status in changes:
        latest[at] = status
    points = sorted(latest.items())
    return [
        StatusInterval(at, points[i + 1][0] if i + 1 < len(points) else None, status)
        for i, (at, status) in enumerate(points)
    ]


def success_ratio(successful: int, total: int) -> float | None:
    """Share of checks that succeeded (UP or DEGRADED outcome); None without checks."""
    if total < 0 or successful < 0 or successful > total:
        raise ValueError("need 0 <= successful <= total")
    return None if total == 0 else successful / total
