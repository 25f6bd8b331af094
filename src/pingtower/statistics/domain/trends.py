"""Trends: a figure beside the same figure for the previous period, and a steady latency rise."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Trend:
    current: float | None
    previous: float | None

    @property
    def change(self) -> float | None:
        """current − previous, when both exist."""
        if self.current is None or self.previous is None:
            return None
        return self.current - self.previous

    @property
    def relative_change(self) -> float | None:
        change = self.change
        if change is None or not self.previous:
            return None
        return change / abs(self.previous)


def slope(values: Sequence[float]) -> float:
    """Least-squares slope of values against their index (units per step)."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x = (n - 1) / 2
    mean_y = sum(values) / n
    covariance = sum((i - mean_x) * (y - mean_y) for i, y in enumerate(values))
    variance = sum((i - mean_x) ** 2 for i in range(n))
    return covariance / variance


def steadily_growing(
    values: Sequence[float | None],
    *,
    min_points: int = 5,
    min_growth: float = 0.2,
    min_rising_share: float = 0.75,
) -> bool:
    """A series (say daily p95) has grown steadily: enough points, a positive trend that adds
    at least `min_growth` (20%) of the first value over the span, and most steps going up, so
    one bad day does not flag a monitor and one good day does not hide a slow rise."""
    points = [v for v in values if v is not None]
    if len(points) < min_points or points[0] <= 0:
        return False
    trend = slope(points)
    if trend <= 0 or trend * (len(points) - 1) < min_growth * points[0]:
        return False
    rising = sum(b > a for a, b in itertools.pairwise(points))
    return rising >= min_rising_share * (len(points) - 1)
