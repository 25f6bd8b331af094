"""The points of a latency timeseries from the stored rollup cells of each step: pure, no I/O.

A point of an hourly series read from hour cells is one stored cell (per region), so the
common case takes its figures straight from that cell and its percentiles straight from the
stored histograms, all of them in one pass (`Histogram.stored_quantiles`), without building a
`Cell` or a `Histogram`: 2,000 points cost 2,000 small dicts, not 10,000 objects. Steps of
several cells merge them with the same arithmetic, in the same order, as `Cell.merge`, so
both give the same figures.

A finished hour or day cell also keeps its point rendered (`fragment`: the point's JSON
without "at", written by compaction; domain/cell_figures.py). A series step that is one such
cell is that text behind its "at" (`points_json`): a year of hours is 8,760 string joins
instead of 8,760 dicts to build, fill and serialise. On PostgreSQL the database renders a
run of such steps, "at" and all, as one text (`Rendered`), and this process only places it.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from pydantic_core import to_json

from pingtower.statistics.domain.histogram import Histogram
from pingtower.statistics.domain.uptime import success_ratio

QUANTILES = (0.5, 0.9, 0.95, 0.99)


class StoredCell(NamedTuple):
    """One rollup row as the timeseries needs it; `histogram` in its stored form."""

    up: int
    degraded: int
    down: int
    latency_count: int
    latency_min: float | None
    latency_max: float | None
    latency_sum: float
    phase_sums: Mapping[str, float]
    phase_counts: Mapping[str, int]
    histogram: bytes


EMPTY = StoredCell(0, 0, 0, 0, None, None, 0.0, {}, {}, b"")


def points(
    starts: Sequence[datetime], cells: Mapping[datetime, Sequence[StoredCell]]
) -> list[dict[str, Any]]:
    """The fields of the API's `Point` for each step start, from the cells of that step (in
    any order the database gave; none: an empty point). The percentiles of every one-cell step
    are read from the stored forms in one pass."""
    nothing: Sequence[StoredCell] = ()
    found = [cells.get(at, nothing) for at in starts]
    single = [i for i, these in enumerate(found) if len(these) == 1]
    quantiles = dict(
        zip(
            single,
            Histogram.stored_quantiles([found[i][0].histogram for i in single], QUANTILES),
            strict=True,
        )
    )
    return [
        _point(at, these, quantiles.get(i))
        for i, (at, these) in enumerate(zip(starts, found, strict=True))
    ]


def fragment(point: Mapping[str, Any]) -> str:
    """A point's JSON without its "at" and opening brace: `'{"at":' + at + ',' + fragment`
    is the point's JSON, byte for byte as `to_json` renders the whole point."""
    return to_json({k: v for k, v in point.items() if k != "at"}).decode()[1:]


class Rendered(NamedTuple):
    """The points of `steps` consecutive steps from `first`, each one finished cell, already
    rendered: their JSON (`'{"at":' + at + ',' + fragment`) joined by commas."""

    first: datetime
    steps: int
    json: bytes


def points_json(
    starts: Sequence[datetime],
    cells: Mapping[datetime, Sequence[StoredCell]],
    finished: Sequence[tuple[datetime, str]],
    rendered: Rendered | None = None,
) -> bytes:
    """`to_json(points(starts, cells))` where a step that is one finished cell comes as its
    stored `fragment` in `finished` (in time order, each at a step start of its own) or
    within `rendered`, instead of in `cells`."""
    if not starts:
        return b"[]"
    if rendered is not None:
        return _around(starts, cells, rendered)
    # every "at" rendered in one call; no datetime text holds a comma
    ats = to_json(starts).decode()[1:-1].split(",")
    count = len(finished)
    parts: list[str]
    others: list[int]
    if [at for at, _ in finished] == list(starts[:count]):
        # the usual case: the finished cells are the first steps, the cells still being
        # folded come after them (comparing the lists is a C loop)
        parts = [f'{{"at":{at},{text}' for at, (_, text) in zip(ats, finished, strict=False)]
        parts.extend("" for _ in range(count, len(starts)))
        others = list(range(count, len(starts)))
    else:
        parts, others = _walk(starts, ats, finished)
    computed = points([starts[i] for i in others], cells)
    for i, point in zip(others, computed, strict=True):
        parts[i] = to_json(point).decode()
    return ("[" + ",".join(parts) + "]").encode()


def _around(
    starts: Sequence[datetime], cells: Mapping[datetime, Sequence[StoredCell]], run: Rendered
) -> bytes:
    """The rendered run placed at its steps, the steps before and after it computed."""
    first = bisect_left(starts, run.first)  # the step starts are in time order
    end = first + run.steps
    if run.steps < 1 or end > len(starts) or starts[first] != run.first:
        raise ValueError("a rendered run must cover consecutive step starts")
    before, after = starts[:first], starts[end:]
    parts = [to_json(points(these, cells))[1:-1] for these in (before, after) if these]
    parts.insert(1 if before else 0, run.json)
    # the megabytes copied once, not once per concatenation
    pieces = [b"["]
    for part in parts:
        pieces += (part, b",")
    pieces[-1] = b"]"
    return b"".join(pieces)


def _walk(
    starts: Sequence[datetime], ats: Sequence[str], finished: Sequence[tuple[datetime, str]]
) -> tuple[list[str], list[int]]:
    """The stored points placed at their steps, and the steps left to compute."""
    parts: list[str] = []
    others: list[int] = []
    # A walk along both in time order: equal datetimes of one tzinfo compare without the
    # UTC offset arithmetic that hashing an aware datetime does, 8,760 times for a year.
    j, stored = 0, len(finished)
    for i, at in enumerate(starts):
        if j < stored and finished[j][0] == at:
            parts.append('{"at":' + ats[i] + "," + finished[j][1])
            j += 1
        else:
            parts.append("")
            others.append(i)
    if j != stored:
        raise ValueError("finished cells must be at step starts, in time order")
    return parts, others


def point(at: datetime, cells: Sequence[StoredCell]) -> dict[str, Any]:
    """The point of one step (`points` for many)."""
    return points([at], {at: cells})[0]


def _point(
    at: datetime, cells: Sequence[StoredCell], quantiles: list[float | None] | None
) -> dict[str, Any]:
    if len(cells) == 1 and quantiles is not None:
        cell = cells[0]
        phases = cell.phase_sums
        phase_means = {p: phases[p] / n for p, n in cell.phase_counts.items() if n}
    elif not cells:
        cell, quantiles, phase_means = EMPTY, [None for _ in QUANTILES], {}
    else:
        cell, quantiles, phase_means = _merged(cells)
    p50, p90, p95, p99 = quantiles
    checks = cell.up + cell.degraded + cell.down
    return {
        "at": at,
        "checks": checks,
        "up": cell.up,
        "degraded": cell.degraded,
        "down": cell.down,
        "success_ratio": success_ratio(cell.up + cell.degraded, checks),
        "min_ms": cell.latency_min,
        "max_ms": cell.latency_max,
        "mean_ms": cell.latency_sum / cell.latency_count if cell.latency_count else None,
        "p50_ms": p50,
        "p90_ms": p90,
        "p95_ms": p95,
        "p99_ms": p99,
        "phases_ms": phase_means,
    }


def _merged(
    cells: Sequence[StoredCell],
) -> tuple[StoredCell, list[float | None], dict[str, float]]:
    up = degraded = down = count = 0
    low: float | None = None
    high: float | None = None
    total = 0.0
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for cell in cells:
        up += cell.up
        degraded += cell.degraded
        down += cell.down
        count += cell.latency_count
        total += cell.latency_sum
        if cell.latency_min is not None and (low is None or cell.latency_min < low):
            low = cell.latency_min
        if cell.latency_max is not None and (high is None or cell.latency_max > high):
            high = cell.latency_max
        for phase, value in cell.phase_sums.items():
            sums[phase] = sums.get(phase, 0.0) + value
        for phase, n in cell.phase_counts.items():
            counts[phase] = counts.get(phase, 0) + n
    merged = StoredCell(up, degraded, down, count, low, high, total, sums, counts, b"")
    histogram = Histogram.from_bytes_many(cell.histogram for cell in cells)
    means = {p: sums[p] / n for p, n in counts.items() if n}
    return merged, histogram.quantiles(QUANTILES), means
