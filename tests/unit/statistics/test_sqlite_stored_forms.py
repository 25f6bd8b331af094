"""SQLite's ingest writes values without SQLAlchemy's type layers (store/sqlite_ingest.py): they
must be the very forms SQLAlchemy stores and compares, and its in-database addition of phase maps
must add as `Cell.merge` does."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from pingtower.common.db import UtcDateTime
from pingtower.statistics.domain.rollups import Cell
from pingtower.statistics.store.sqlite_ingest import (
    _dumps,
    _loads,
    add_maps,
    from_sqlite_time,
    sqlite_time,
)

DIALECT = sqlite.dialect()
STORED = UtcDateTime().dialect_impl(DIALECT).bind_processor(DIALECT)
READ = UtcDateTime().dialect_impl(DIALECT).result_processor(DIALECT, None)

offsets = st.integers(-14 * 60, 14 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))
times = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC) | offsets
)


@given(times)
def test_a_time_is_stored_as_sqlalchemy_stores_a_utc_datetime(at: datetime) -> None:
    assert STORED is not None
    assert READ is not None
    assert sqlite_time(at) == STORED(at)
    assert from_sqlite_time(sqlite_time(at)) == READ(STORED(at)) == at


def test_a_naive_time_is_refused_as_sqlalchemy_refuses_it() -> None:
    with pytest.raises(ValueError, match="naive"):
        sqlite_time(datetime(2026, 11, 10, 12))


names = st.sampled_from(["dns", "connect", "tls", "first_byte"])
sums = st.dictionaries(names, st.floats(min_value=0, max_value=1e6, allow_nan=False))
counts = st.dictionaries(names, st.integers(0, 10_000))


@given(sums, counts, sums, counts)
def test_stored_phase_maps_add_as_cells_merge(
    stored_sums: dict[str, float],
    stored_counts: dict[str, int],
    added_sums: dict[str, float],
    added_counts: dict[str, int],
) -> None:
    stored = Cell(phase_sums=dict(stored_sums), phase_counts=dict(stored_counts))
    stored.merge(Cell(phase_sums=added_sums, phase_counts=added_counts))
    assert add_maps(json.dumps(stored_sums), json.dumps(added_sums)) == json.dumps(
        stored.phase_sums
    )
    assert add_maps(json.dumps(stored_counts), json.dumps(added_counts)) == json.dumps(
        stored.phase_counts
    )
    assert add_maps(None, json.dumps(added_counts)) == json.dumps(added_counts)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN, infinities and -0.0 too
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(st.dictionaries(st.text(), json_values, max_size=6))
def test_phase_maps_are_read_and_written_as_json_reads_and_writes_them(
    value: dict[str, object],
) -> None:
    """`add_maps`' own reading and writing (json's C scanner and encoder called directly)
    give what `json.loads` and `json.dumps` give, byte for byte."""
    text = json.dumps(value)
    assert _dumps(value) == text
    assert repr(_loads(text)) == repr(json.loads(text))  # NaN != NaN: compared as text
    for other in (" " + text, text + " ", text.replace(", ", ","), text + "x", "", "nul"):
        try:
            expected = repr(json.loads(other))
        except ValueError as error:
            with pytest.raises(type(error)):
                _loads(other)
        else:
            assert repr(_loads(other)) == expected
