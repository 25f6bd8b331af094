"""What the series and cell-figure tests share: generated check results and the stored form of
the cell they make."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from pingtower.common.events import Outcome
from pingtower.statistics.domain.rollups import Cell
from pingtower.statistics.domain.series import StoredCell

Found = list[tuple[Outcome, float | None, dict[str, float]]]

AT = datetime(2026, 11, 10, 8, tzinfo=UTC)
HOUR = timedelta(hours=1)
outcomes = st.sampled_from(list(Outcome))
latency = st.one_of(st.none(), st.floats(min_value=0.0, max_value=1e5, allow_nan=False))
phases = st.dictionaries(
    st.sampled_from(["dns", "connect", "tls", "first_byte"]),
    st.floats(min_value=0.0, max_value=1e4, allow_nan=False),
    max_size=4,
)
results = st.lists(st.tuples(outcomes, latency, phases), max_size=30)


def cell_of(found: Found) -> Cell:
    cell = Cell()
    for outcome, latency_ms, phases_ms in found:
        cell.add_result(outcome, latency_ms, phases_ms)
    return cell


def stored(cell: Cell) -> StoredCell:
    return StoredCell(
        cell.up,
        cell.degraded,
        cell.down,
        cell.latency_count,
        cell.latency_min,
        cell.latency_max,
        cell.latency_sum,
        dict(cell.phase_sums),
        dict(cell.phase_counts),
        cell.histogram.to_bytes(),
    )
