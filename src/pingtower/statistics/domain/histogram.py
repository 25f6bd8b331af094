"""A mergeable log-bucketed latency histogram (the DDSketch idea) with a stated relative error.

Bucket k holds values in (γ^(k-1), γ^k] with γ = (1+α)/(1−α); a bucket is reported as
2γ^k/(γ+1), which is within α of every value in it. So any quantile read from the histogram is
within α (1%) of the exact quantile of the values added, and merging two histograms is adding
their counts: the figure for a year costs the same as the figure for an hour, and a late result
simply adds one more count. Values at or below MIN_VALUE (sub-microsecond latencies in ms) share
one zero bucket reported as 0.

Counts are held densely, from the lowest bucket in use to the highest, in an `array`: latencies
of one monitor span a few hundred buckets at most (every factor of e is 50 buckets), so merging
is adding two arrays element-wise (a C loop through `map`) rather than a dict update per bucket.
The stored form (`to_bytes`) decodes with one `struct` call, and many stored forms are added as
big integers (`from_bytes_many`). The span is bounded whatever the input: keys run from −345
(MIN_VALUE) to about 35,500 (the largest float).
"""

from __future__ import annotations

import math
import struct
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from itertools import accumulate
from operator import add

ALPHA = 0.01
GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA = math.log(GAMMA)
MIN_VALUE = 1e-3

# Stored form, little-endian: format version (1), zero-bucket count, sum of the other counts,
# key of the first dense bucket, then one unsigned 32-bit count per bucket. A stored cell covers
# at most a day, so its counts fit 32 bits.
FORMAT = 1
_HEADER = struct.Struct("<Bqqi")
_COUNT_SIZE = 4
_FIELD_BITS = 8 * _COUNT_SIZE


class EncodingError(ValueError):
    """Bytes that are not a histogram in the stored form."""


def _read_header(data: bytes) -> tuple[int, int, int, int]:
    """A stored form's zero count, sum of its other counts, key of its first bucket and number
    of buckets; EncodingError when its size or format is not the stored form."""
    size = len(data) - _HEADER.size
    if size < 0 or size % _COUNT_SIZE:
        raise EncodingError(f"histogram of {len(data)} bytes")
    version, zero, total, offset = _HEADER.unpack_from(data)
    if version != FORMAT:
        raise EncodingError(f"histogram format {version}")
    return zero, total, offset, size // _COUNT_SIZE


class Histogram:
    __slots__ = ("counts", "offset", "zero")

    def __init__(self, buckets: Mapping[int, int] | None = None, zero: int = 0) -> None:
        self.zero = zero
        self.offset = 0  # key of counts[0]
        self.counts = array("q")
        if not buckets:
            return
        for k, n in sorted(buckets.items()):
            if n:
                self._widen(k, k + 1)
                self.counts[k - self.offset] += n

    @staticmethod
    def key(value: float) -> int:
        return math.ceil(math.log(value) / _LOG_GAMMA)

    @staticmethod
    def representative(key: int) -> float:
        return 2 * GAMMA**key / (GAMMA + 1)

    @property
    def buckets(self) -> dict[int, int]:
        """The non-empty buckets, key -> count."""
        return {self.offset + i: n for i, n in enumerate(self.counts) if n}

    @property
    def count(self) -> int:
        return self.zero + sum(self.counts)

    def _widen(self, lo: int, hi: int) -> None:
        """Make the dense counts cover keys [lo, hi)."""
        if not self.counts:
            self.offset = lo
            self.counts = array("q", bytes(8 * (hi - lo)))
            return
        if lo < self.offset:
            self.counts[0:0] = array("q", bytes(8 * (self.offset - lo)))
            self.offset = lo
        end = self.offset + len(self.counts)
        if hi > end:
            self.counts.extend(array("q", bytes(8 * (hi - end))))

    def add(self, value: float, count: int = 1) -> None:
        if math.isnan(value):
            raise ValueError("NaN latency")
        if value <= MIN_VALUE:
            self.zero += count
            return
        k = self.key(value)
        self._widen(k, k + 1)
        self.counts[k - self.offset] += count

    def extend(self, values: Iterable[float]) -> None:
        for value in values:
            self.add(value)

    def _add_dense(self, offset: int, counts: Sequence[int]) -> None:
        if not counts:
            return
        if not self.counts:
            self.offset = offset
            self.counts = array("q", counts)
            return
        self._widen(offset, offset + len(counts))
        lo = offset - self.offset
        if len(counts) == 1:  # a minute cell, most often: one bucket
            self.counts[lo] += counts[0]
            return
        hi = lo + len(counts)
        self.counts[lo:hi] = array("q", map(add, self.counts[lo:hi], counts))

    def merge(self, other: Histogram) -> None:
        self.zero += other.zero
        self._add_dense(other.offset, other.counts)

    def merged(self, other: Histogram) -> Histogram:
        result = Histogram(zero=self.zero)
        result._add_dense(self.offset, self.counts)
        result.merge(other)
        return result

    def quantiles(self, qs: Sequence[float]) -> list[float | None]:
        """The value of rank ⌊q·(n−1)⌋ (0-based) among the values added, for each q, within α;
        None each if empty. One pass over the buckets for all of them."""
        return _quantiles(self.zero, self.offset, self.counts, qs)

    def quantile(self, q: float) -> float | None:
        """The value of rank ⌊q·(n−1)⌋ (0-based) among the values added, within α; None if empty."""
        return self.quantiles((q,))[0]

    def to_bytes(self) -> bytes:
        """The stored form, trimmed to the buckets in use."""
        counts = self.counts
        lo, hi = 0, len(counts)
        while lo < hi and not counts[lo]:
            lo += 1
        while hi > lo and not counts[hi - 1]:
            hi -= 1
        used = counts[lo:hi]
        header = _HEADER.pack(FORMAT, self.zero, sum(used), self.offset + lo if used else 0)
        return header + struct.pack(f"<{len(used)}I", *used)

    @staticmethod
    def stored_quantiles(
        items: Sequence[bytes | None], qs: Sequence[float]
    ) -> list[list[float | None]]:
        """`[from_bytes(data).quantiles(qs) for data in items]` in one pass, without building
        a histogram: the counts of all the stored forms are unpacked with one `struct` call
        and summed with one `accumulate`, then each one's quantiles are bisections within its
        own stretch of those running sums. A timeseries of 2,000 points so pays a few
        bisections a point rather than an unpack, a sum and an object each."""
        _check_quantiles(qs)
        header = _HEADER.size
        payloads: list[bytes] = []
        spans: list[tuple[int, int, int]] = []  # zero count, key of the first bucket, buckets
        for data in items:
            if not data:
                spans.append((0, 0, 0))
                continue
            zero, _, offset, n = _read_header(data)
            payloads.append(data[header:])
            spans.append((zero, offset, n))
        counts = b"".join(payloads)
        # running[j]: the counts before the j-th bucket of all the stored forms together
        running = list(
            accumulate(struct.unpack(f"<{len(counts) // _COUNT_SIZE}I", counts), initial=0)
        )
        nothing: list[float | None] = [None for _ in qs]
        found: list[list[float | None]] = []
        start = 0
        for zero, offset, n in spans:
            end = start + n
            base = running[start] - zero
            total = running[end] - base
            if not total:
                found.append(nothing[:])
                start = end
                continue
            one: list[float | None] = []
            for q in qs:
                # i: how many of this form's running sums (zero bucket first) are <= the rank
                rank = math.floor(q * (total - 1))
                i = 0 if rank < zero else bisect_right(running, rank + base, start, end + 1) - start
                one.append(0.0 if i == 0 else 2 * GAMMA ** (offset + i - 1) / (GAMMA + 1))
            found.append(one)
            start = end
        return found

    @staticmethod
    def running_sums(items: Sequence[bytes | None]) -> list[bytes]:
        """`[from_bytes_many(items[: i + 1]).to_bytes() for i in range(len(items))]` in one
        pass: each stored form is added to the running sum as a big integer of 32-bit fields
        (as in `from_bytes_many`), whose bytes are then the next stored form as they are.
        Compaction so writes a day's 24 tails per monitor without 24 histograms each."""
        found: list[bytes] = []
        zero = total = summed = 0
        lo = hi = 0  # key of summed's lowest field, and one past its highest
        header = _HEADER.size
        mask = (1 << _FIELD_BITS) - 1
        for i, data in enumerate(items):
            if data:
                part_zero, part_total, offset, n = _read_header(data)
                zero += part_zero
                counts = int.from_bytes(data[header:], "little")
                if counts:
                    total += part_total
                    if total >= 1 << _FIELD_BITS:
                        # fields may have carried into their neighbours: added as arrays
                        # below, and the big integer is of no more use
                        summed = 0
                    elif not summed:
                        summed, lo, hi = counts, offset, offset + n
                    elif offset >= lo:
                        summed += counts << (_FIELD_BITS * (offset - lo))
                    else:
                        summed = (summed << (_FIELD_BITS * (lo - offset))) + counts
                        lo = offset
                    hi = max(hi, offset + n)
                    # trimmed to the buckets in use, as `to_bytes` stores them
                    while summed and not summed & mask:
                        summed >>= _FIELD_BITS
                        lo += 1
                    while summed and not summed >> (_FIELD_BITS * (hi - lo - 1)):
                        hi -= 1
            if total >= 1 << _FIELD_BITS:
                found.append(Histogram.from_bytes_many(items[: i + 1]).to_bytes())
                continue
            payload = summed.to_bytes(_COUNT_SIZE * (hi - lo), "little") if summed else b""
            found.append(_HEADER.pack(FORMAT, zero, total, lo if summed else 0) + payload)
        return found

    @staticmethod
    def add_stored(stored: bytes | None, added: bytes | None) -> bytes:
        """`from_bytes(stored).merged(from_bytes(added)).to_bytes()` without building either:
        SQLite's ingest adds a batch's cell to the stored one with this, inside its upsert.

        The usual case, a cell whose buckets the stored form spans already (a minute cell's
        new latency, a minute cell folded into its hour and day cells) or without buckets (a
        failed check), is the stored bytes with those fields and the header's sums raised:
        the fields added as one small big integer, no trimming (nothing can be trimmed from a
        form that stays as wide). It adds exactly as `running_sums` does (tests)."""
        if stored and added:
            zero, total, offset, n = _read_header(stored)
            added_zero, added_total, key, m = _read_header(added)
            header = _HEADER.size
            if (
                n
                and total + added_total < 1 << _FIELD_BITS  # no field can pass 2^32 either
                and _COUNT.unpack_from(stored, header)[0]  # trimmed, as `to_bytes` leaves it
                and _COUNT.unpack_from(stored, len(stored) - _COUNT_SIZE)[0]
            ):
                at = key - offset
                counts = int.from_bytes(added[header:], "little") if m else 0
                if not counts:
                    # no counts but the zero bucket's: `running_sums` ignores the form's sum
                    return _HEADER.pack(FORMAT, zero + added_zero, total, offset) + stored[header:]
                if at >= 0 and at + m <= n:
                    place = header + _COUNT_SIZE * at
                    end = place + _COUNT_SIZE * m
                    fields = int.from_bytes(stored[place:end], "little") + counts
                    return b"".join(
                        (
                            _HEADER.pack(FORMAT, zero + added_zero, total + added_total, offset),
                            stored[header:place],
                            fields.to_bytes(end - place, "little"),
                            stored[end:],
                        )
                    )
        return Histogram.running_sums((stored, added))[-1]

    @staticmethod
    def is_stored_form(data: bytes | None) -> bool:
        """Whether `data` is what `to_bytes` gives for the histogram it holds
        (`from_bytes(data).to_bytes() == data`), checked without building the histogram: a
        well-formed header, its sum that of the fields, the fields trimmed. Compaction passes
        such a form through unchanged where the general path would decode and encode it."""
        if not data:
            return False
        try:
            _, total, offset, n = _read_header(data)
        except EncodingError:
            return False
        if not n:
            return total == 0 and offset == 0
        counts = struct.unpack_from(f"<{n}I", data, _HEADER.size)
        return bool(counts[0]) and bool(counts[-1]) and sum(counts) == total

    @staticmethod
    def stored_one(value: float) -> bytes:
        """`to_bytes` of a histogram given `value` alone (a cell of one result), made without
        the histogram: there are few distinct forms, one per bucket."""
        if math.isnan(value):
            raise ValueError("NaN latency")
        if value <= MIN_VALUE:
            return _ZERO_ONLY
        return _one_in(Histogram.key(value))

    @classmethod
    def from_bytes(cls, data: bytes | None) -> Histogram:
        return cls.from_bytes_many((data,))

    @classmethod
    def from_bytes_many(cls, items: Iterable[bytes | None]) -> Histogram:
        """One histogram from many stored ones; empty bytes (or None) count as an empty
        histogram.

        The counts of each one are read as one integer of 32-bit fields (`int.from_bytes`),
        shifted to its first bucket and added: Python adds big integers in C, so a part costs
        about a microsecond whatever its width, against a Python-level loop per bucket. No field
        can carry into the next while the counts of all parts together stay below 2^32 (they are
        checked: the header holds each part's sum); beyond that they are added as arrays."""
        parts: list[tuple[int, int, bytes]] = []
        zero = total = summed = 0
        # key of summed's lowest field, and one past its highest
        lo = hi = 0
        header = _HEADER.size
        unpack = _HEADER.unpack_from
        from_bytes = int.from_bytes
        # One pass, each part added as it is read, its header read inline (as `_read_header`
        # reads it): the metrics snapshot merges ~8 parts for each of 10,000 monitors, so
        # every step per part counts.
        for data in items:
            if not data:
                continue
            size = len(data) - header
            if size < 0 or size % _COUNT_SIZE:
                raise EncodingError(f"histogram of {len(data)} bytes")
            version, part_zero, part_total, offset = unpack(data)
            if version != FORMAT:
                raise EncodingError(f"histogram format {version}")
            zero += part_zero
            if not size:
                continue
            n = size // _COUNT_SIZE
            total += part_total
            counts = from_bytes(data[header:], "little")
            if not parts:
                summed, lo, hi = counts, offset, offset
            elif offset >= lo:
                summed += counts << (_FIELD_BITS * (offset - lo))
            else:
                summed = (summed << (_FIELD_BITS * (lo - offset))) + counts
                lo = offset
            parts.append((offset, n, data))
            if offset + n > hi:
                hi = offset + n
        histogram = cls(zero=zero)
        if not parts:
            return histogram
        if len(parts) == 1 or total >= 1 << _FIELD_BITS:
            # One part needs no adding; past 2^32 fields may have carried into their
            # neighbours: add the parts as arrays instead.
            for offset, n, data in parts:
                histogram._add_dense(offset, struct.unpack_from(f"<{n}I", data, header))
            return histogram
        width = hi - lo
        histogram.offset = lo
        histogram.counts = array(
            "q", struct.unpack(f"<{width}I", summed.to_bytes(width * _COUNT_SIZE, "little"))
        )
        return histogram

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Histogram)
            and self.zero == other.zero
            and self.buckets == other.buckets
        )

    def __repr__(self) -> str:
        return f"Histogram(count={self.count})"


_COUNT = struct.Struct("<I")
_ZERO_ONLY = _HEADER.pack(FORMAT, 1, 0, 0)


@lru_cache(maxsize=1024)
def _one_in(key: int) -> bytes:
    """The stored form of one value in bucket `key`."""
    return _HEADER.pack(FORMAT, 0, 1, key) + _COUNT.pack(1)


def _quantiles(
    zero: int, offset: int, counts: Sequence[int], qs: Sequence[float]
) -> list[float | None]:
    """The quantiles of dense counts whose first bucket has key `offset`: one pass for all."""
    _check_quantiles(qs)
    running = list(accumulate(counts, initial=zero))
    n = running[-1]
    if n == 0:
        return [None for _ in qs]
    found: list[float | None] = []
    for q in qs:
        rank = math.floor(q * (n - 1))
        # running[i] counts the values below bucket i of counts; the zero bucket comes first
        i = bisect_right(running, rank)
        found.append(0.0 if i == 0 else Histogram.representative(offset + i - 1))
    return found


def _check_quantiles(qs: Sequence[float]) -> None:
    for q in qs:
        if not 0.0 <= q <= 1.0:
            raise ValueError("quantile must be within [0, 1]")
