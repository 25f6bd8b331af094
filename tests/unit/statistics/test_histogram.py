"""The latency histogram: every quantile within 1% of the exact one, merging is exact."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pingtower.statistics.domain.histogram import ALPHA, Histogram

latencies = st.floats(min_value=0.01, max_value=1e6, allow_nan=False)
samples = st.lists(latencies, min_size=1, max_size=300)
quantiles = st.sampled_from([0.0, 0.5, 0.9, 0.95, 0.99, 1.0])
TOLERANCE = ALPHA * (1 + 1e-9)  # α itself, plus float rounding at a bucket's edge


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def relative_error(estimate: float, truth: float) -> float:
    return abs(estimate - truth) / truth


@given(samples, quantiles)
def test_quantile_is_within_one_percent_of_the_exact_quantile(
    values: list[float], q: float
) -> None:
    histogram = Histogram()
    histogram.extend(values)
    estimate = histogram.quantile(q)
    assert estimate is not None
    assert relative_error(estimate, exact(values, q)) <= TOLERANCE


@given(st.lists(samples, min_size=1, max_size=6), quantiles)
def test_merged_histograms_answer_like_one_histogram_of_all_values(
    parts: list[list[float]], q: float
) -> None:
    merged = Histogram()
    for part in parts:
        histogram = Histogram()
        histogram.extend(part)
        merged.merge(Histogram.from_json(histogram.to_json()))  # through storage, too
    everything = [v for part in parts for v in part]
    single = Histogram()
    single.extend(everything)
    assert merged == single
    estimate = merged.quantile(q)
    assert estimate is not None
    assert relative_error(estimate, exact(everything, q)) <= TOLERANCE


def test_empty_histogram_has_no_quantile() -> None:
    assert Histogram().quantile(0.5) is None


def test_zero_latency_is_counted_and_reported_as_zero() -> None:
    histogram = Histogram()
    histogram.extend([0.0, 0.0, 100.0])
    assert histogram.count == 3
    assert histogram.quantile(0.5) == 0.0
    assert histogram.quantile(1.0) == pytest.approx(100.0, rel=ALPHA)
    assert Histogram.from_json(histogram.to_json()) == histogram


def test_p95_of_a_known_distribution() -> None:
    histogram = Histogram()
    histogram.extend(float(ms) for ms in range(1, 1001))  # 1..1000 ms
    assert histogram.quantile(0.95) == pytest.approx(950.0, rel=ALPHA)
    assert histogram.quantile(0.5) == pytest.approx(500.0, rel=ALPHA)


def test_quantile_outside_zero_one_is_refused() -> None:
    with pytest.raises(ValueError, match="quantile"):
        Histogram().quantile(1.5)
