"""A finished day's tails: per monitor and region, for each hour of the day from the first
with a cell on, the latency count and histogram of the hours from it to the day's end, so
that a reader of "the last 24 hours" sums one tail and today's cells instead of up to 24 hour
cells (statistics/store/queries.py). Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import accumulate, repeat
from typing import TypeVar

from pingtower.statistics.domain.histogram import Histogram

K = TypeVar("K")  # a monitor's and a region's stored forms
T = TypeVar("T")  # an hour's start as stored


def tail_rows(
    cells: Iterable[tuple[K, K, Mapping[int, tuple[int, bytes]]]], starts: Sequence[T]
) -> Iterator[tuple[K, K, T, int, bytes]]:
    """The tail rows (monitor, region, hour start, latency count, histogram) of a day whose
    hour cells are `cells`: per monitor and region, each hour's (latency count, stored
    histogram) by its hour of the day (0-23); `starts[h]`: hour h's start. Every hour from
    the first with a cell on gets a tail, so a reader finds the tail of any hour whatever
    hours the monitor had no check in."""
    for monitor, region, found in cells:
        hours = range(23, min(found) - 1, -1)  # from the day's end back, summed as they go
        these = [found.get(hour, (0, b"")) for hour in hours]
        yield from zip(
            repeat(monitor),
            repeat(region),
            (starts[hour] for hour in hours),
            accumulate(count for count, _ in these),
            Histogram.running_sums([data for _, data in these]),
            strict=False,
        )
