"""The figures a finished rollup cell keeps beside its counts: pure, no I/O.

A timeseries point of one hour or day cell needs its p50/p90/p95/p99 and per-phase means,
which means unpacking the stored histogram and decoding two JSON maps per point; for a year
of hours that costs more than the rest of the answer. Compaction computes them once, when
an hour or a day has been folded whole, and the row keeps the percentiles (for SQL readers)
and the point as the series renders it (`series.fragment`). They hold while the cell still
has the checks it had then (`checks`): every result adds one check, so a late result that
changes the cell makes readers compute from the histogram again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from pingtower.statistics.domain.rollups import EPOCH, Resolution
from pingtower.statistics.domain.series import StoredCell, fragment, points


class CellFigures(NamedTuple):
    checks: int
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    point_json: str


def figures(cells: Sequence[StoredCell]) -> list[CellFigures]:
    """The figures of each cell: its point as a one-cell step, the percentiles of all of
    them read in one pass (`series.points`, keyed here by stand-in times)."""
    keys = [EPOCH + i * Resolution.MINUTE.length for i in range(len(cells))]
    found = points(keys, {at: [cell] for at, cell in zip(keys, cells, strict=True)})
    return [
        CellFigures(
            cell.up + cell.degraded + cell.down,
            point["p50_ms"],
            point["p90_ms"],
            point["p95_ms"],
            point["p99_ms"],
            fragment(point),
        )
        for cell, point in zip(cells, found, strict=True)
    ]


def figures_of_stored(rows: Sequence[Sequence[Any]]) -> list[CellFigures]:
    """`figures` of cells as a database holds them: each row `StoredCell`'s fields in its
    order, the two phase maps as JSON text (all rows' maps decoded in one call)."""
    maps = json.loads("[" + ",".join(f"{row[7]},{row[8]}" for row in rows) + "]")
    return figures(
        [
            StoredCell._make((*row[:7], maps[2 * i], maps[2 * i + 1], row[9]))
            for i, row in enumerate(rows)
        ]
    )
