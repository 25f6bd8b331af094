"""Incident figures: durations, MTTR and MTBF for one monitor."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class IncidentSpan:
    started_at: datetime
    resolved_at: datetime | None

    def duration(self, now: datetime) -> timedelta:
        return (self.resolved_at or now) - self.started_at


def mttr(incidents: Sequence[IncidentSpan]) -> timedelta | None:
    """Mean time to recovery: the mean duration of the resolved incidents."""
    resolved = [i for i in incidents if i.resolved_at is not None]
    if not resolved:
        return None
    total = sum((i.duration(i.started_at) for i in resolved), timedelta(0))
    return total / len(resolved)


def mtbf(incidents: Sequence[IncidentSpan]) -> timedelta | None:
    """Mean time between failures: the mean time from an incident's recovery to the start of
    the next one. Needs two incidents; overlapping incidents count a gap of zero."""
    ordered = sorted(incidents, key=lambda i: i.started_at)
    gaps: list[timedelta] = []
    for previous, following in itertools.pairwise(ordered):
        if previous.resolved_at is None:
            gaps.append(timedelta(0))
        else:
            gaps.append(max(following.started_at - previous.resolved_at, timedelta(0)))
    if not gaps:
        return None
    return sum(gaps, timedelta(0)) / len(gaps)
