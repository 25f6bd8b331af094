"""A timeseries point from stored cells equals the point of the merged `Cell`: the fast path
(one cell, percentiles from the stored form) and the merge of several give the same figures."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pingtower.common.events import Outcome
from pingtower.statistics.domain.rollups import Cell, merge_all
from pingtower.statistics.domain.series import QUANTILES, point, points
from pingtower.statistics.domain.uptime import success_ratio
from tests.unit.statistics.cells import AT, HOUR, cell_of, results, stored


def expected(cell: Cell) -> dict[str, object]:
    """The point as the route built it from a merged Cell before the fast path."""
    p50, p90, p95, p99 = cell.histogram.quantiles(QUANTILES)
    return {
        "at": AT,
        "checks": cell.checks,
        "up": cell.up,
        "degraded": cell.degraded,
        "down": cell.down,
        "success_ratio": success_ratio(cell.successful, cell.checks),
        "min_ms": cell.latency_min,
        "max_ms": cell.latency_max,
        "mean_ms": cell.mean,
        "p50_ms": p50,
        "p90_ms": p90,
        "p95_ms": p95,
        "p99_ms": p99,
        "phases_ms": cell.phase_means(),
    }


@given(results)
def test_one_stored_cell_gives_the_point_of_its_cell(
    found: list[tuple[Outcome, float | None, dict[str, float]]],
) -> None:
    cell = cell_of(found)
    assert point(AT, [stored(cell)]) == expected(cell)


@given(st.lists(results, min_size=2, max_size=5))
def test_several_stored_cells_give_the_point_of_their_merge(
    parts: list[list[tuple[Outcome, float | None, dict[str, float]]]],
) -> None:
    cells = [cell_of(found) for found in parts]
    stored_cells = [stored(cell) for cell in cells]
    assert point(AT, stored_cells) == expected(merge_all(cells))


def test_a_step_without_cells_is_an_empty_point() -> None:
    empty = point(AT, [])
    assert empty == expected(Cell())
    assert (empty["checks"], empty["p95_ms"], empty["phases_ms"]) == (0, None, {})


def test_a_known_cell() -> None:
    cell = cell_of(
        [
            (Outcome.UP, 10.0, {"dns": 1.0}),
            (Outcome.DEGRADED, 30.0, {"dns": 3.0, "tls": 4.0}),
            (Outcome.DOWN, None, {}),
        ]
    )
    found = point(AT, [stored(cell)])
    assert (found["checks"], found["up"], found["degraded"], found["down"]) == (3, 1, 1, 1)
    assert found["success_ratio"] == 2 / 3
    assert (found["min_ms"], found["max_ms"], found["mean_ms"]) == (10.0, 30.0, 20.0)
    assert found["phases_ms"] == {"dns": 2.0, "tls": 4.0}
    # rank ⌊0.99·(2−1)⌋ = 0 of the two latencies: the lower one, within 1%
    assert abs(found["p99_ms"] - 10.0) <= 0.01 * 10.0


@given(st.lists(st.lists(results, max_size=3), min_size=1, max_size=12))
def test_a_series_equals_its_points_one_by_one(
    steps: list[list[list[tuple[Outcome, float | None, dict[str, float]]]]],
) -> None:
    # steps of no cell, one cell and several, in one call: the one-cell percentiles are read
    # together from the stored forms and must land on their own step
    starts = [AT + i * HOUR for i in range(len(steps))]
    cells = {
        at: [stored(cell_of(found)) for found in parts]
        for at, parts in zip(starts, steps, strict=True)
        if parts
    }
    assert points(starts, cells) == [point(at, cells.get(at, [])) for at in starts]
    assert points(starts, cells) == [
        {**expected(merge_all(cell_of(found) for found in parts)), "at": at}
        for at, parts in zip(starts, steps, strict=True)
    ]
