"""The figures compaction stores in a finished cell are the cell's own: its percentiles are
the histogram's, and its stored point gives the series, byte for byte, what computing the
point from the cell gives."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic_core import to_json

from pingtower.common.events import Outcome
from pingtower.statistics.domain.cell_figures import figures
from pingtower.statistics.domain.histogram import Histogram
from pingtower.statistics.domain.series import (
    QUANTILES,
    Rendered,
    StoredCell,
    fragment,
    point,
    points,
    points_json,
)
from tests.unit.statistics.cells import AT, HOUR, Found, cell_of, results
from tests.unit.statistics.cells import stored as stored_cell


def stored(found: Found) -> StoredCell:
    return stored_cell(cell_of(found))


@given(st.lists(results, max_size=8))
def test_the_stored_percentiles_are_those_of_the_cells_histogram(
    cells: list[list[tuple[Outcome, float | None, dict[str, float]]]],
) -> None:
    found = [stored(parts) for parts in cells]
    for cell, figure in zip(found, figures(found), strict=True):
        expected = Histogram.from_bytes(cell.histogram).quantiles(QUANTILES)
        assert [figure.p50, figure.p90, figure.p95, figure.p99] == expected
        assert figure.checks == cell.up + cell.degraded + cell.down


@given(results)
def test_the_stored_point_is_the_cells_point_without_its_time(
    found: list[tuple[Outcome, float | None, dict[str, float]]],
) -> None:
    cell = stored(found)
    (figure,) = figures([cell])
    expected = point(AT, [cell])
    assert '{"at":' + to_json(AT).decode() + "," + figure.point_json == to_json(expected).decode()
    assert fragment(expected) == figure.point_json


@given(st.lists(st.lists(results, max_size=3), min_size=1, max_size=10), st.data())
def test_a_series_with_stored_points_is_the_series_computed_from_its_cells(
    steps: list[list[list[tuple[Outcome, float | None, dict[str, float]]]]], data: st.DataObject
) -> None:
    # steps of no cell, one cell (some of them finished, read as their stored point) and
    # several; the answer must not show which way each point came
    starts = [AT + i * HOUR for i in range(len(steps))]
    cells = {
        at: [stored(found) for found in parts]
        for at, parts in zip(starts, steps, strict=True)
        if parts
    }
    finished = [
        (at, figures(these)[0].point_json)
        for at, these in cells.items()
        if len(these) == 1 and data.draw(st.booleans())
    ]
    others = {at: these for at, these in cells.items() if at not in dict(finished)}
    expected = to_json(points(starts, cells))
    assert points_json(starts, others, finished) == expected


def test_a_series_of_no_steps_is_an_empty_list() -> None:
    assert points_json([], {}, []) == b"[]"


def test_a_stored_point_off_the_steps_is_refused() -> None:
    cell = stored([(Outcome.UP, 10.0, {})])
    (figure,) = figures([cell])
    off = AT + timedelta(minutes=30)
    with pytest.raises(ValueError, match="step starts"):
        points_json([AT, AT + HOUR], {}, [(off, figure.point_json)])


@given(st.lists(results, min_size=1, max_size=8), st.data())
def test_a_run_of_points_rendered_by_the_database_is_placed_among_the_computed_steps(
    steps: list[list[tuple[Outcome, float | None, dict[str, float]]]], data: st.DataObject
) -> None:
    # PostgreSQL renders "at" and the stored fragment of consecutive finished cells; the
    # steps before and after the run are computed here
    starts = [AT + i * HOUR for i in range(len(steps))]
    cells = {at: [stored(found)] for at, found in zip(starts, steps, strict=True)}
    first = data.draw(st.integers(0, len(starts) - 1))
    end = data.draw(st.integers(first + 1, len(starts)))
    text = ",".join(
        '{"at":' + to_json(at).decode() + "," + figures(cells[at])[0].point_json
        for at in starts[first:end]
    )
    run = Rendered(starts[first], end - first, text.encode())
    others = {
        at: these for at, these in cells.items() if not starts[first] <= at < starts[end - 1] + HOUR
    }
    assert points_json(starts, others, [], run) == to_json(points(starts, cells))


def test_a_rendered_run_off_the_steps_is_refused() -> None:
    starts = [AT, AT + HOUR]
    for run in (Rendered(AT + timedelta(minutes=30), 1, b"{}"), Rendered(AT + HOUR, 2, b"{},{}")):
        with pytest.raises(ValueError, match="consecutive step starts"):
            points_json(starts, {}, [], run)
