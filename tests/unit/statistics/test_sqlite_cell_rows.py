"""SQLite's ingest makes a batch's rollup rows from the fresh results without a `Cell` for a
cell of one result (store/sqlite_ingest.py): the rows must be exactly those of the results
summed per cell by `Cell` (`summed_cells`), whatever the results, late ones included."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from pingtower.common.events import CheckCompleted, Outcome
from pingtower.common.sqlite_values import result_texts, utc_text
from pingtower.statistics.domain.rollups import summed_cells
from pingtower.statistics.store.sqlite_ingest import (
    _add_counts,
    _cell_rows,
    _fresh_cell_rows,
    _result_rows,
    add_maps,
)

MONITORS = [uuid.UUID(int=i + 1, version=4) for i in range(3)]
FOLDED = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
latencies = st.one_of(
    st.none(),
    st.sampled_from([0.0, -0.0, -1.0, 1e-3, 1e-4, float("nan")]),
    st.floats(min_value=0, max_value=1e5, allow_nan=False),
)
phase_values = st.one_of(
    st.sampled_from([0.0, -0.0, -2.5, 3]),
    st.floats(min_value=-1.0, max_value=1e4, allow_nan=False),
)
phases = st.dictionaries(st.sampled_from(["dns", "connect", "tls", "ttfb"]), phase_values)


@st.composite
def results(draw: st.DrawFn) -> tuple[str, CheckCompleted]:
    # Within two minutes either side of the watermark: late results (hour and day cells too),
    # on-time ones, and several per minute cell.
    finished = FOLDED + timedelta(microseconds=draw(st.integers(-120_000_000, 120_000_000)))
    return draw(st.sampled_from(["w1", "w2"])), CheckCompleted(
        check_id=uuid.uuid4(),
        monitor_id=draw(st.sampled_from(MONITORS)),
        region=draw(st.sampled_from(["eu", "us"])),
        scheduled_at=finished - timedelta(seconds=1),
        started_at=finished - timedelta(milliseconds=500),
        finished_at=finished,
        outcome=draw(st.sampled_from(list(Outcome))),
        latency_ms=draw(latencies),
        phases_ms=draw(phases),
    )


@settings(max_examples=300)
@given(st.lists(results(), min_size=1, max_size=25))
def test_rows_of_fresh_results_are_those_of_the_results_summed_by_cell(
    checks: list[tuple[str, CheckCompleted]],
) -> None:
    expected = _cell_rows(summed_cells(checks, FOLDED))
    found = _fresh_cell_rows(checks, _result_rows(checks), FOLDED)
    # NaN != NaN: compared as text
    assert repr(found) == repr(expected)


def test_a_result_stores_its_values_in_sqlalchemys_forms() -> None:
    event = CheckCompleted(
        check_id=uuid.uuid4(),
        monitor_id=MONITORS[0],
        region="eu",
        scheduled_at=FOLDED,
        started_at=FOLDED + timedelta(microseconds=5),
        finished_at=FOLDED + timedelta(seconds=1),
        outcome=Outcome.UP,
        phases_ms={"dns": 1.5},
    )
    texts = result_texts(event)
    assert texts == (
        event.check_id.hex,
        event.monitor_id.hex,
        "2026-11-10 09:00:00.000000",
        "2026-11-10 09:00:00.000005",
        "2026-11-10 09:00:01.000000",
        '{"dns": 1.5}',
    )
    assert result_texts(event) is texts  # kept for the other consumer
    assert utc_text(event.finished_at) == texts.finished_at


@given(
    st.dictionaries(st.sampled_from(["dns", "tls"]), st.integers(0, 9)),
    st.dictionaries(st.sampled_from(["dns", "tls"]), st.integers(0, 9)),
)
def test_kept_sums_of_phase_counts_are_those_added_anew(
    stored: dict[str, int], added: dict[str, int]
) -> None:
    assert _add_counts(json.dumps(stored), json.dumps(added)) == add_maps(
        json.dumps(stored), json.dumps(added)
    )
