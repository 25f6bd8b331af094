"""A mergeable log-bucketed latency histogram (the DDSketch idea) with a stated relative error.

Bucket k holds values in (γ^(k-1), γ^k] with γ = (1+α)/(1−α); a bucket is reported as
2γ^k/(γ+1), which is within α of every value in it. So any quantile read from the histogram is
within α (1%) of the exact quantile of the values added, and merging two histograms is adding
their counts: the figure for a year costs the same as the figure for an hour, and a late result
simply adds one more count. Values at or below MIN_VALUE (sub-microsecond latencies in ms) share
one zero bucket reported as 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

ALPHA = 0.01
GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA = math.log(GAMMA)
MIN_VALUE = 1e-3
ZERO_KEY = "z"


class Histogram:
    __slots__ = ("buckets", "zero")

    def __init__(self, buckets: Mapping[int, int] | None = None, zero: int = 0) -> None:
        self.buckets: dict[int, int] = dict(buckets or {})
        self.zero = zero

    @staticmethod
    def key(value: float) -> int:
        return math.ceil(math.log(value) / _LOG_GAMMA)

    @staticmethod
    def representative(key: int) -> float:
        return 2 * GAMMA**key / (GAMMA + 1)

    @property
    def count(self) -> int:
        return self.zero + sum(self.buckets.values())

    def add(self, value: float, count: int = 1) -> None:
        if math.isnan(value):
            raise ValueError("NaN latency")
        if value <= MIN_VALUE:
            self.zero += count
            return
        k = self.key(value)
        self.buckets[k] = self.buckets.get(k, 0) + count

    def extend(self, values: Iterable[float]) -> None:
        for value in values:
            self.add(value)

    def merge(self, other: Histogram) -> None:
        self.zero += other.zero
        for k, n in other.buckets.items():
            self.buckets[k] = self.buckets.get(k, 0) + n

    def merged(self, other: Histogram) -> Histogram:
        result = Histogram(self.buckets, self.zero)
        result.merge(other)
        return result

    def quantile(self, q: float) -> float | None:
        """The value of rank ⌊q·(n−1)⌋ (0-based) among the values added, within α; None if empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError("quantile must be within [0, 1]")
        n = self.count
        if n == 0:
            return None
        rank = math.floor(q * (n - 1))
        if rank < self.zero:
            return 0.0
        seen = self.zero
        for k in sorted(self.buckets):
            seen += self.buckets[k]
            if seen > rank:
                return self.representative(k)
        raise AssertionError("rank beyond the histogram's count")  # pragma: no cover

    def to_json(self) -> dict[str, int]:
        """Bucket counts keyed by bucket index as text (JSON object keys), zero bucket as 'z'."""
        data = {str(k): n for k, n in self.buckets.items() if n}
        if self.zero:
            data[ZERO_KEY] = self.zero
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, int] | None) -> Histogram:
        histogram = cls()
        for k, n in (data or {}).items():
            if k == ZERO_KEY:
                histogram.zero += int(n)
            else:
                histogram.buckets[int(k)] = histogram.buckets.get(int(k), 0) + int(n)
        return histogram

    @classmethod
    def from_json_many(cls, items: Iterable[Mapping[str, int] | None]) -> Histogram:
        """One histogram from many stored ones: bucket counts are added while still keyed by
        text and turned into numbers once, which is what makes reading thousands of rollup
        cells cheap."""
        totals: dict[str, int] = {}
        get = totals.get
        for data in items:
            if data:
                for k, n in data.items():
                    totals[k] = get(k, 0) + n
        return cls.from_json(totals)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Histogram)
            and self.zero == other.zero
            and {k: n for k, n in self.buckets.items() if n}
            == {k: n for k, n in other.buckets.items() if n}
        )

    def __repr__(self) -> str:
        return f"Histogram(count={self.count})"
