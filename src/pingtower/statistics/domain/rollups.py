"""Rollup cells (per monitor, region, resolution and bucket start) and how a time range is
covered by the coarsest cells that fit in it.

A cell holds counts by outcome, latency count/min/max/sum, per-phase sums and a latency
histogram; cells merge by addition, so results arriving late or out of order land in their
bucket and give the same cell as if they had come in order.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pingtower.common.events import CheckCompleted, Outcome
from pingtower.statistics.domain.histogram import Histogram

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Resolution(StrEnum):
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"

    @property
    def length(self) -> timedelta:
        return _LENGTHS[self]


_LENGTHS = {
    Resolution.MINUTE: timedelta(minutes=1),
    Resolution.HOUR: timedelta(hours=1),
    Resolution.DAY: timedelta(days=1),
}
COARSEST_FIRST = (Resolution.DAY, Resolution.HOUR, Resolution.MINUTE)
_MINUTE_ONLY = (Resolution.MINUTE,)


def written_resolutions(finished_at: datetime, folded_until: datetime) -> tuple[Resolution, ...]:
    """The cells ingest adds a result to: its minute cell (compaction folds it into its hour
    and day cells later), and its hour and day cells too when compaction has already folded
    past its minute (a late result)."""
    return COARSEST_FIRST if finished_at < folded_until else _MINUTE_ONLY


def floor_to(at: datetime, length: timedelta) -> datetime:
    """Start of the bucket of `length` (aligned on the Unix epoch, UTC) holding `at`."""
    return at - (at - EPOCH) % length


def ceil_to(at: datetime, length: timedelta) -> datetime:
    floored = floor_to(at, length)
    return floored if floored == at else floored + length


def minute_starts(start: datetime, end: datetime) -> list[datetime]:
    """The starts of the minute buckets that begin within [start, end)."""
    length = Resolution.MINUTE.length
    first = ceil_to(start, length)
    return [first + k * length for k in range(max(0, -(-(end - first) // length)))]


@dataclass(frozen=True)
class Segment:
    resolution: Resolution
    start: datetime
    end: datetime


def cover(start: datetime, end: datetime, folded_until: datetime | None = None) -> list[Segment]:
    """Disjoint segments, in time order, covering [start, end) widened to whole minutes, each
    read at the coarsest resolution whose whole buckets fit: days in the middle, hours and
    minutes at the edges. So a 90-day range reads ~90 day cells and a few dozen others.

    Ingest writes minute cells only; compaction folds them into hour and day cells up to a
    watermark (`folded_until`). Hour and day cells are complete only before it, so from there
    on the range is read from minute cells. None means everything is folded."""
    lo = floor_to(start, Resolution.MINUTE.length)
    hi = ceil_to(end, Resolution.MINUTE.length)
    folded = hi if folded_until is None else floor_to(folded_until, Resolution.MINUTE.length)
    middle = max(lo, min(hi, folded))
    tail = [Segment(Resolution.MINUTE, middle, hi)] if middle < hi else []
    return [*_cover(lo, middle, 0), *tail]


def _cover(lo: datetime, hi: datetime, level: int) -> list[Segment]:
    if lo >= hi:
        return []
    resolution = COARSEST_FIRST[level]
    if resolution is Resolution.MINUTE:
        return [Segment(resolution, lo, hi)]
    inner_lo = ceil_to(lo, resolution.length)
    inner_hi = floor_to(hi, resolution.length)
    if inner_lo >= inner_hi:
        return _cover(lo, hi, level + 1)
    return [
        *_cover(lo, inner_lo, level + 1),
        Segment(resolution, inner_lo, inner_hi),
        *_cover(inner_hi, hi, level + 1),
    ]


@dataclass
class Cell:
    up: int = 0
    degraded: int = 0
    down: int = 0
    latency_count: int = 0
    latency_min: float | None = None
    latency_max: float | None = None
    latency_sum: float = 0.0
    phase_sums: dict[str, float] = field(default_factory=dict)
    phase_counts: dict[str, int] = field(default_factory=dict)
    histogram: Histogram = field(default_factory=Histogram)

    @property
    def checks(self) -> int:
        return self.up + self.degraded + self.down

    @property
    def successful(self) -> int:
        return self.up + self.degraded

    @property
    def mean(self) -> float | None:
        return None if self.latency_count == 0 else self.latency_sum / self.latency_count

    def add_result(
        self, outcome: Outcome, latency_ms: float | None, phases_ms: Mapping[str, float]
    ) -> None:
        if outcome is Outcome.UP:
            self.up += 1
        elif outcome is Outcome.DEGRADED:
            self.degraded += 1
        else:
            self.down += 1
        if latency_ms is not None and latency_ms >= 0:
            self.latency_count += 1
            self.latency_sum += latency_ms
            self.latency_min = lowest(self.latency_min, latency_ms)
            self.latency_max = highest(self.latency_max, latency_ms)
            self.histogram.add(latency_ms)
        for phase, value in phases_ms.items():
            self.phase_sums[phase] = self.phase_sums.get(phase, 0.0) + value
            self.phase_counts[phase] = self.phase_counts.get(phase, 0) + 1

    def merge(self, other: Cell) -> None:
        self.up += other.up
        self.degraded += other.degraded
        self.down += other.down
        self.latency_count += other.latency_count
        self.latency_sum += other.latency_sum
        self.latency_min = lowest(self.latency_min, other.latency_min)
        self.latency_max = highest(self.latency_max, other.latency_max)
        for phase, value in other.phase_sums.items():
            self.phase_sums[phase] = self.phase_sums.get(phase, 0.0) + value
        for phase, count in other.phase_counts.items():
            self.phase_counts[phase] = self.phase_counts.get(phase, 0) + count
        self.histogram.merge(other.histogram)

    def phase_means(self) -> dict[str, float]:
        return {p: self.phase_sums[p] / n for p, n in self.phase_counts.items() if n}


def merge_all(cells: Iterable[Cell]) -> Cell:
    total = Cell()
    for cell in cells:
        total.merge(cell)
    return total


def lowest(a: float | None, b: float | None) -> float | None:
    """The lower of two latencies, either possibly missing (None); of two equal, `a`."""
    if a is None:
        return b
    return a if b is None else min(a, b)


def highest(a: float | None, b: float | None) -> float | None:
    """The higher of two latencies, either possibly missing (None); of two equal, `a`."""
    if a is None:
        return b
    return a if b is None else max(a, b)


CellKey = tuple[uuid.UUID, str, str, datetime]  # monitor, region, resolution, bucket start


def summed_cells(
    results: Iterable[tuple[str, CheckCompleted]], folded_until: datetime
) -> dict[CellKey, tuple[str, Cell]]:
    """Results (each with its workspace) summed per cell (`written_resolutions`)."""
    cells: dict[CellKey, tuple[str, Cell]] = {}
    for tenant, event in results:
        finished = event.finished_at
        for resolution in written_resolutions(finished, folded_until):
            key = (
                event.monitor_id,
                event.region,
                resolution.value,
                floor_to(finished, _LENGTHS[resolution]),
            )
            found = cells.get(key)
            if found is None:
                found = cells[key] = (tenant, Cell())
            found[1].add_result(event.outcome, event.latency_ms, event.phases_ms)
    return cells


def resolution_for_step(step: timedelta) -> Resolution:
    """The coarsest resolution whose buckets tile a step exactly (a 90-minute step: hours no,
    minutes yes)."""
    for resolution in COARSEST_FIRST:
        if step >= resolution.length and step % resolution.length == timedelta(0):
            return resolution
    raise ValueError("step must be a whole number of minutes")
