"""The latency histogram: every quantile within 1% of the exact one, merging is exact, and the
stored (bytes) form decodes to the same histogram and merges like the decoded ones."""

from __future__ import annotations

import math
import random
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pingtower.statistics.domain.histogram import ALPHA, EncodingError, Histogram

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
        merged.merge(Histogram.from_bytes(histogram.to_bytes()))  # through storage, too
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
    assert Histogram.from_bytes(histogram.to_bytes()) == histogram


def test_p95_of_a_known_distribution() -> None:
    histogram = Histogram()
    histogram.extend(float(ms) for ms in range(1, 1001))  # 1..1000 ms
    assert histogram.quantile(0.95) == pytest.approx(950.0, rel=ALPHA)
    assert histogram.quantile(0.5) == pytest.approx(500.0, rel=ALPHA)


def test_quantile_outside_zero_one_is_refused() -> None:
    with pytest.raises(ValueError, match="quantile"):
        Histogram().quantile(1.5)


# Latencies as they come (zero bucket included), and counts as stored cells hold them.
any_latencies = st.lists(
    st.just(0.0) | st.floats(min_value=1e-4, max_value=1e7, allow_nan=False), max_size=200
)


def histogram_of(values: list[float]) -> Histogram:
    histogram = Histogram()
    histogram.extend(values)
    return histogram


@given(any_latencies)
def test_stored_form_round_trips(values: list[float]) -> None:
    histogram = histogram_of(values)
    decoded = Histogram.from_bytes(histogram.to_bytes())
    assert decoded == histogram
    assert decoded.count == len(values)
    assert decoded.to_bytes() == histogram.to_bytes()


@given(st.lists(any_latencies, max_size=8))
def test_merging_stored_forms_equals_merging_the_decoded_histograms(
    parts: list[list[float]],
) -> None:
    histograms = [histogram_of(part) for part in parts]
    expected = Histogram()
    for histogram in histograms:
        expected.merge(Histogram.from_bytes(histogram.to_bytes()))
    in_bulk = Histogram.from_bytes_many(h.to_bytes() for h in histograms)
    assert in_bulk == expected == histogram_of([v for part in parts for v in part])
    assert in_bulk.quantiles([0.5, 0.95]) == expected.quantiles([0.5, 0.95])


@given(any_latencies, any_latencies)
def test_merged_leaves_both_operands_unchanged(left: list[float], right: list[float]) -> None:
    a, b = histogram_of(left), histogram_of(right)
    before = (a.to_bytes(), b.to_bytes())
    assert a.merged(b) == histogram_of(left + right)
    assert (a.to_bytes(), b.to_bytes()) == before


@given(any_latencies)
def test_quantiles_in_one_pass_equal_each_quantile(values: list[float]) -> None:
    histogram = histogram_of(values)
    qs = [0.0, 0.5, 0.9, 0.95, 0.99, 1.0]
    assert histogram.quantiles(qs) == [histogram.quantile(q) for q in qs]


def test_empty_stored_forms_count_as_empty_histograms() -> None:
    assert Histogram.from_bytes_many([b"", None, Histogram().to_bytes()]) == Histogram()


@pytest.mark.parametrize(
    "data",
    [b"\x01\x00", Histogram(buckets={3: 1}).to_bytes()[:-1], b"\x02" + bytes(20)],
    ids=["short header", "torn count", "unknown format"],
)
def test_bytes_that_are_not_a_histogram_are_refused(data: bytes) -> None:
    with pytest.raises(EncodingError):
        Histogram.from_bytes(data)


def test_parts_whose_counts_add_past_32_bits_still_merge_exactly() -> None:
    # Each stored cell fits 32 bits per bucket; their sum does not, so the bulk merge must not
    # add them as packed 32-bit fields.
    big = Histogram(buckets={-3: 3_000_000_000, 200: 4_000_000_000, 201: 5}, zero=7)
    small = Histogram(buckets={-4: 1, 201: 2})
    merged = Histogram.from_bytes_many([big.to_bytes(), small.to_bytes(), big.to_bytes()])
    assert merged.buckets == {-4: 1, -3: 6_000_000_000, 200: 8_000_000_000, 201: 12}
    assert merged.zero == 14


@given(st.lists(any_latencies, min_size=2, max_size=8), st.randoms(use_true_random=False))
def test_bulk_merge_does_not_depend_on_the_order_of_the_parts(
    parts: list[list[float]], rng: random.Random
) -> None:
    stored = [histogram_of(part).to_bytes() for part in parts]
    shuffled = stored[:]
    rng.shuffle(shuffled)
    everything = histogram_of([v for part in parts for v in part])
    assert Histogram.from_bytes_many(shuffled) == everything
    # the part with the highest buckets first: later parts reach below the first one's
    stored.sort(key=lambda data: -Histogram.from_bytes(data).offset)
    assert Histogram.from_bytes_many(stored) == everything


def test_a_part_below_and_a_part_above_the_first_widen_the_merge_both_ways() -> None:
    middle = Histogram(buckets={10: 1, 11: 2})
    low = Histogram(buckets={-5: 4})
    high = Histogram(buckets={40: 3})
    merged = Histogram.from_bytes_many([middle.to_bytes(), low.to_bytes(), high.to_bytes()])
    assert merged.buckets == {-5: 4, 10: 1, 11: 2, 40: 3}


@given(st.lists(st.one_of(any_latencies, st.just([])), max_size=8))
def test_quantiles_of_many_stored_forms_equal_each_decoded_histograms(
    parts: list[list[float]],
) -> None:
    histograms = [histogram_of(values) for values in parts]
    for histogram, zeros in zip(histograms, range(len(histograms)), strict=True):
        histogram.zero += zeros % 3  # some with values in the zero bucket
    qs = [0.0, 0.5, 0.9, 0.95, 0.99, 1.0]
    stored = [histogram.to_bytes() for histogram in histograms]
    assert Histogram.stored_quantiles(stored, qs) == [h.quantiles(qs) for h in histograms]


def test_stored_quantiles_of_nothing_are_none_and_bad_bytes_are_refused() -> None:
    assert Histogram.stored_quantiles([b"", None], [0.5]) == [[None], [None]]
    assert Histogram.stored_quantiles([Histogram(zero=2).to_bytes()], [0.5]) == [[0.0]]
    assert Histogram.stored_quantiles([], [0.5]) == []
    with pytest.raises(EncodingError):
        Histogram.stored_quantiles([b"\x02" + bytes(20)], [0.5])
    with pytest.raises(EncodingError):
        Histogram.stored_quantiles([Histogram(buckets={3: 1}).to_bytes()[:-1]], [0.5])
    with pytest.raises(ValueError, match="quantile"):
        Histogram.stored_quantiles([Histogram(buckets={3: 1}).to_bytes()], [1.5])


@given(st.lists(st.one_of(any_latencies.map(lambda v: histogram_of(v).to_bytes()), st.just(b""))))
def test_running_sums_are_the_stored_forms_of_each_prefix_merged(parts: list[bytes]) -> None:
    assert Histogram.running_sums(parts) == [
        Histogram.from_bytes_many(parts[: i + 1]).to_bytes() for i in range(len(parts))
    ]


def test_running_sums_past_32_bits_and_of_nothing() -> None:
    big = Histogram(buckets={-3: 3_000_000_000, 200: 4_000_000_000, 201: 5}, zero=7).to_bytes()
    small = Histogram(buckets={-4: 1, 201: 2}).to_bytes()
    # more than 2^32 counts in all, though no bucket holds that many (a stored form's bound)
    parts: list[bytes | None] = [small, None, big]
    assert Histogram.running_sums(parts) == [
        Histogram.from_bytes_many(parts[: i + 1]).to_bytes() for i in range(len(parts))
    ]
    assert Histogram.running_sums([]) == []
    with pytest.raises(EncodingError):
        Histogram.running_sums([b"\x01\x00"])


@given(any_latencies, any_latencies)
def test_adding_stored_forms_stores_the_merged_histogram(
    left: list[float], right: list[float]
) -> None:
    a, b = histogram_of(left), histogram_of(right)
    assert Histogram.add_stored(a.to_bytes(), b.to_bytes()) == a.merged(b).to_bytes()
    assert Histogram.add_stored(None, b.to_bytes()) == b.to_bytes()


@given(
    st.lists(st.floats(min_value=5.0, max_value=50.0), min_size=1, max_size=30),
    st.integers(-3, 260),
    st.integers(1, 5),
    st.integers(0, 2),
)
def test_adding_one_bucket_to_a_stored_form_in_place_stores_the_merged_histogram(
    stored_values: list[float], key: int, count: int, zero: int
) -> None:
    """The in-place path of `add_stored` (one bucket added within the stored span, the usual
    minute cell) and the general path give the same bytes, whatever the bucket's place."""
    stored = histogram_of(stored_values)
    stored.zero = zero
    first = stored.offset + stored.counts.tolist().index(next(n for n in stored.counts if n))
    added = Histogram(buckets={first + key % 240: count}, zero=zero)
    assert (
        Histogram.add_stored(stored.to_bytes(), added.to_bytes())
        == stored.merged(added).to_bytes()
        == Histogram.running_sums((stored.to_bytes(), added.to_bytes()))[-1]
    )


def test_adding_one_bucket_keeps_the_general_path_where_in_place_would_differ() -> None:
    one = Histogram(buckets={10: 1}).to_bytes()
    # A stored form with empty fields at its ends (not as `to_bytes` writes it) is trimmed
    untrimmed = Histogram(buckets={9: 0, 10: 4, 11: 0}).to_bytes()
    header = 21
    wide = untrimmed[:header] + bytes(4) + untrimmed[header:] + bytes(4)
    wide = wide[:17] + (9).to_bytes(4, "little", signed=True) + wide[21:]
    assert Histogram.add_stored(wide, one) == Histogram(buckets={10: 5}).to_bytes()
    # Past 2^32 counts in all: the stored form cannot hold the field
    full = Histogram(buckets={10: 2**32 - 1}).to_bytes()
    with pytest.raises(struct.error):
        Histogram.add_stored(full, one)
    # An added bucket with no count changes nothing but the zero bucket
    empty_field = one[:-4] + bytes(4)
    stored = Histogram(buckets={10: 3, 12: 1}).to_bytes()
    assert (
        Histogram.add_stored(stored, empty_field)
        == Histogram.running_sums((stored, empty_field))[-1]
    )


@given(
    st.lists(st.floats(min_value=5.0, max_value=500.0), min_size=1, max_size=40),
    st.dictionaries(st.integers(-3, 300), st.integers(0, 4), max_size=4),
    st.integers(0, 2),
    st.integers(0, 2),
    st.sampled_from(["as is", "untrimmed added", "untrimmed stored"]),
)
def test_adding_any_cell_to_a_stored_form_stores_what_the_general_path_stores(
    stored_values: list[float],
    buckets: dict[int, int],
    zero: int,
    added_zero: int,
    shape: str,
) -> None:
    """`add_stored` in place (a minute cell folded into its hour cell: a few buckets within
    the stored span, or none) and the general path give the same bytes, wherever the added
    buckets fall, inside the stored span or across its ends."""
    stored_histogram = histogram_of(stored_values)
    stored_histogram.zero = zero
    first = stored_histogram.offset + next(i for i, n in enumerate(stored_histogram.counts) if n)
    added = Histogram(
        buckets={first + key % 200 - 3: count for key, count in buckets.items()}, zero=added_zero
    ).to_bytes()
    stored = stored_histogram.to_bytes()
    if shape == "untrimmed added" and len(added) > 21:
        added = _untrimmed(added, 1, 1)
    elif shape == "untrimmed stored":
        stored = _untrimmed(stored, 1, 0)
    assert Histogram.add_stored(stored, added) == Histogram.running_sums((stored, added))[-1]
    assert (
        Histogram.add_stored(stored, added)
        == Histogram.from_bytes(stored).merged(Histogram.from_bytes(added)).to_bytes()
    )


def test_adding_buckets_at_and_past_the_ends_of_a_stored_form() -> None:
    stored = Histogram(buckets={10: 3, 11: 0, 12: 2, 13: 1}).to_bytes()
    for buckets in ({10: 1, 13: 1}, {13: 2, 14: 1}, {9: 1, 10: 1}, {9: 1, 14: 1}, {11: 5}, {}):
        added = Histogram(buckets=buckets, zero=2).to_bytes()
        assert Histogram.add_stored(stored, added) == Histogram.running_sums((stored, added))[-1]


@given(st.one_of(st.floats(min_value=0, max_value=1e9), st.sampled_from([0.0, 1e-3, 1e-4])))
def test_the_stored_form_of_one_value_is_that_of_a_histogram_given_it(value: float) -> None:
    histogram = Histogram()
    histogram.add(value)
    assert Histogram.stored_one(value) == histogram.to_bytes()


def test_one_nan_value_is_refused_as_adding_it_is() -> None:
    with pytest.raises(ValueError, match="NaN"):
        Histogram.stored_one(math.nan)


def _untrimmed(data: bytes, before: int, after: int) -> bytes:
    """`data` with empty fields at its ends (the key of its first moved down to match)."""
    _, zero, total, offset = struct.unpack_from("<Bqqi", data)
    header = struct.pack("<Bqqi", 1, zero, total, offset - before)
    return header + bytes(4 * before) + data[21:] + bytes(4 * after)


stored_forms = any_latencies.map(lambda values: histogram_of(values).to_bytes())


@given(
    stored_forms,
    st.sampled_from(["as is", "untrimmed", "total", "offset", "version", "cut", "empty"]),
    st.integers(0, 3),
)
def test_a_form_is_a_stored_form_when_decoding_and_encoding_it_gives_it_back(
    data: bytes, change: str, amount: int
) -> None:
    """`is_stored_form` (compaction passes such forms through) says exactly whether
    `from_bytes(data).to_bytes() == data`, for forms as stored and forms altered."""
    zero, total, offset = struct.unpack_from("<qqi", data, 1)
    if change == "untrimmed":
        data = _untrimmed(data, amount, 3 - amount)
    elif change == "total":
        data = struct.pack("<Bqqi", 1, zero, total + amount - 1, offset) + data[21:]
    elif change == "offset":
        data = struct.pack("<Bqqi", 1, zero, total, offset + amount) + data[21:]
    elif change == "version":
        data = struct.pack("<Bqqi", 2, zero, total, offset) + data[21:]
    elif change == "cut":
        data = data[: len(data) - 1 - amount]
    elif change == "empty":
        data = b""
    try:
        round_trip = Histogram.from_bytes(data).to_bytes() == data
    except EncodingError:
        round_trip = False
    assert Histogram.is_stored_form(data) == round_trip
    if change == "as is":
        assert Histogram.is_stored_form(data)
