"""SQLite's ingest makes a batch's rollup rows from the fresh results without a `Cell` for a
cell of one result (store/sqlite_ingest.py): the rows must be exactly those of the results
summed per cell by `Cell` (`summed_cells`), whatever the results, late ones included. So must
compaction's rows on SQLite, which pass a minute cell alone in its hour through as stored."""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pingtower.common.events import CheckCompleted, Outcome
from pingtower.common.sqlite_values import result_texts, utc_text
from pingtower.statistics.domain.histogram import Histogram
from pingtower.statistics.domain.rollups import summed_cells
from pingtower.statistics.store.compaction import coarser_cells
from pingtower.statistics.store.sqlite_ingest import (
    _ADD_TO_CELL,
    _FUNCTIONS,
    FoldInput,
    MinuteGroups,
    _add_counts,
    _cell_rows,
    _fresh_cell_rows,
    _result_rows,
    add_maps,
    coarser_rows,
    folded_rows,
    from_sqlite_time,
    group_rows,
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


# Minute cells as stored: phase maps and histograms mostly as the ingest writes them, some
# not (integer or -0.0 sums, other spacing, untrimmed histograms), which must not pass through
stored_sums = st.one_of(
    st.dictionaries(
        st.sampled_from(["dns", "connect", "tls"]),
        st.floats(min_value=0, max_value=1e4, allow_nan=False).map(lambda v: 0.0 + v),
    ).map(json.dumps),
    st.sampled_from(['{"dns": 2}', '{"dns": -0.0}', '{"dns":1.5}', "{}", '{"dns": NaN}', "null"]),
)
stored_counts = st.one_of(
    st.dictionaries(st.sampled_from(["dns", "connect", "tls"]), st.integers(0, 50)).map(json.dumps),
    st.sampled_from(['{"dns": 2.0}', '{"dns":1}', "{}"]),
)


@st.composite
def stored_histograms(draw: st.DrawFn) -> bytes:
    histogram = Histogram()
    histogram.extend(draw(st.lists(st.floats(min_value=0, max_value=1e4), max_size=4)))
    data = histogram.to_bytes()
    if draw(st.booleans()) and len(data) > 21:
        return data[:21] + data[21:] + bytes(4)  # an empty field at its end
    return data


# a cell's lowest and highest latency (equal ones of either sign: which one a sum keeps)
stored_latencies = st.one_of(
    st.none(), st.sampled_from([0.0, -0.0, 12.5]), st.floats(min_value=0, max_value=1e4)
)


@st.composite
def minute_rows(draw: st.DrawFn) -> tuple[object, ...]:
    # minutes around a midnight: several hours and two days
    start = FOLDED.replace(hour=22) + timedelta(minutes=draw(st.integers(0, 200)))
    low = draw(stored_latencies)
    high = low if draw(st.booleans()) else draw(stored_latencies)
    return (
        draw(st.sampled_from(MONITORS)).hex,
        draw(st.sampled_from(["eu", "us"])),
        utc_text(start),
        draw(st.sampled_from(["w1", "w2"])),
        draw(st.integers(0, 3)),
        draw(st.integers(0, 3)),
        draw(st.integers(0, 3)),
        draw(st.integers(0, 3)),
        low,
        high,
        draw(st.sampled_from([0.0, -0.0, 12.5, 1e-3])),
        draw(stored_sums),
        draw(stored_counts),
        draw(stored_histograms()),
    )


@settings(max_examples=300)
@given(st.lists(minute_rows(), min_size=1, max_size=30))
def test_rows_of_minute_cells_folded_are_those_of_the_cells_summed(
    drawn: list[tuple[Any, ...]],
) -> None:
    """Compaction's rows on SQLite (`coarser_rows`, a minute cell alone in its hour passing
    through as stored) are exactly those of the cells decoded and summed (`coarser_cells`)."""
    by_key = {(row[0], row[1], row[2]): row for row in drawn}  # one row per stored key
    rows = [by_key[key] for key in sorted(by_key)]  # in the reading's order
    decoded = [
        SimpleNamespace(
            monitor_id=uuid.UUID(row[0]),
            region=row[1],
            bucket_start=from_sqlite_time(row[2]),
            tenant=row[3],
            up=row[4],
            degraded=row[5],
            down=row[6],
            latency_count=row[7],
            latency_min=row[8],
            latency_max=row[9],
            latency_sum=row[10],
            phase_sums=json.loads(row[11]),
            phase_counts=json.loads(row[12]),
            histogram=row[13],
        )
        for row in rows
    ]
    expected = _cell_rows(coarser_cells(decoded))
    # NaN != NaN: compared as text
    assert repr(coarser_rows(rows)) == repr(expected)


def test_a_minute_cell_alone_in_its_hour_passes_through_as_stored() -> None:
    histogram = Histogram()
    histogram.extend([12.0, 40.0])
    row = (
        MONITORS[0].hex,
        "eu",
        "2026-11-10 09:07:00.000000",
        "w1",
        2,
        0,
        1,
        2,
        12.0,
        40.0,
        52.0,
        '{"dns": 3.5}',
        '{"dns": 2}',
        histogram.to_bytes(),
    )
    hour, day = coarser_rows([row])
    assert hour == (MONITORS[0].hex, "eu", "hour", "2026-11-10 09:00:00.000000", *row[3:])
    assert day == (MONITORS[0].hex, "eu", "day", "2026-11-10 00:00:00.000000", *row[3:])


# Stored hour and day cells as compaction and late results leave them (their phase maps as
# `json.dumps` writes them, -0.0 and missing latencies included)
stored_cell_sums = st.one_of(
    st.dictionaries(
        st.sampled_from(["dns", "connect", "tls"]),
        st.floats(min_value=-1.0, max_value=1e4, allow_nan=False),
    ).map(json.dumps),
    st.sampled_from(['{"dns": 2}', '{"dns": -0.0}', "{}"]),
)


@st.composite
def stored_cells(draw: st.DrawFn) -> tuple[object, ...]:
    latencies = draw(st.one_of(st.none(), st.sampled_from([0.0, -0.0, 7.5]), st.floats(0, 1e4)))
    return (
        draw(st.integers(0, 50)),
        draw(st.integers(0, 5)),
        draw(st.integers(0, 5)),
        draw(st.integers(0, 50)),
        latencies,
        latencies,
        draw(st.sampled_from([0.0, -0.0, 12.5, 1e-3])),
        draw(stored_cell_sums),
        draw(stored_counts),
        draw(stored_histograms()),
    )


@st.composite
def fold_inputs(draw: st.DrawFn) -> tuple[list[tuple[Any, ...]], FoldInput]:
    """Minute rows of one hour (a fold's), and stored hour and day cells for some of their
    monitors and regions."""
    drawn = draw(st.lists(minute_rows(), min_size=1, max_size=20))
    hour = FOLDED.replace(hour=23)
    rows = sorted(
        {
            (row[0], row[1], utc_text(hour + timedelta(minutes=int(row[2][14:16]) % 60))): (
                row[0],
                row[1],
                utc_text(hour + timedelta(minutes=int(row[2][14:16]) % 60)),
                *row[3:],
            )
            for row in drawn
        }.items()
    )
    keys = sorted({(row[0], row[1]) for _, row in rows})
    cells: list[dict[tuple[str, str], tuple[Any, ...]]] = [{}, {}]
    for key in keys:
        for n, found in enumerate(cells):
            if draw(st.booleans()):
                found[key] = (len(keys) * n + len(found) + 1, *draw(stored_cells()))
    groups: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for _, row in rows:
        groups.setdefault((row[0], row[1]), []).append(row)
    read = FoldInput(hour, hour + timedelta(hours=1), None, None, list(groups.values()), *cells)
    return [row for _, row in rows], read


@settings(max_examples=300)
@given(fold_inputs())
def test_cells_folded_outside_sqlite_are_those_its_upsert_stores(
    drawn: tuple[list[tuple[Any, ...]], FoldInput],
) -> None:
    """A fold's final hour and day cells made on the event loop (`folded_rows`) are, to the
    last bit, those SQLite stores when it adds `coarser_rows` to the stored cells by its
    upsert and the functions registered on the connection (the fold as it was)."""
    rows, read = drawn
    db = sqlite3.connect(":memory:")
    for name, (arguments, function) in _FUNCTIONS.items():
        db.create_function(name, arguments, function, deterministic=True)
    db.execute(
        "CREATE TABLE rollups (monitor_id, region, resolution, bucket_start, tenant, up, "
        "degraded, down, latency_count, latency_min, latency_max, latency_sum, phase_sums, "
        "phase_counts, histogram, PRIMARY KEY (monitor_id, resolution, bucket_start, region))"
    )
    starts = {"hour": utc_text(read.start), "day": utc_text(read.start.replace(hour=0))}
    for resolution, cells in (("hour", read.hours), ("day", read.days)):
        for (monitor, region), (_, *values) in cells.items():
            db.execute(
                f"INSERT INTO rollups VALUES ({', '.join('?' * 15)})",
                (monitor, region, resolution, starts[resolution], "w1", *values),
            )
    db.executemany(_ADD_TO_CELL, coarser_rows(rows))
    expected = {
        tuple(row[:4]): tuple(row[4:])
        for row in db.execute("SELECT * FROM rollups ORDER BY 1, 2, 3, 4")
    }
    # NaN != NaN: compared as text
    assert repr(_final_cells(folded_rows(read.minutes, read), read)) == repr(
        sorted(expected.items())
    )
    # The same once a fold's reading has summed each key's rows as they came
    gathered = MinuteGroups()
    for row in rows:
        gathered.add(row)
    assert repr(_final_cells(folded_rows(gathered.groups(), read), read)) == repr(
        sorted(expected.items())
    )


def _final_cells(staged: list[tuple[Any, ...]], read: FoldInput) -> list[Any]:
    """`folded_rows`' rows as the cells they leave stored, by key."""
    found = {}
    for ref, *row in staged:
        monitor, region, resolution = row[:3]
        stored = (read.hours if resolution == "hour" else read.days).get((monitor, region))
        assert ref == (None if stored is None else stored[0])
        # a stored cell keeps its workspace (the fold does not write it)
        tenant = "w1" if stored is not None else row[4]
        found[(monitor, region, resolution, row[3])] = (tenant, *row[5:])
    return sorted(found.items())


@settings(max_examples=300)
@given(st.lists(minute_rows(), min_size=1, max_size=30))
def test_minute_rows_summed_as_a_fold_reads_them_make_the_cells_of_the_rows(
    drawn: list[tuple[Any, ...]],
) -> None:
    """A fold of several minutes sums each key's rows as it reads them (`MinuteGroups`): the
    hour and day rows it makes are those of the rows one by one (`coarser_rows`), and a key
    whose phase maps are all JSON objects is left one row."""
    hour = FOLDED.replace(hour=23)
    by_key = {
        (row[0], row[1], int(row[2][14:16])): (
            row[0],
            row[1],
            utc_text(hour + timedelta(minutes=int(row[2][14:16]))),
            *row[3:],
        )
        for row in drawn
    }
    rows = [by_key[key] for key in sorted(by_key, key=lambda key: (key[2], key[:2]))]
    gathered = MinuteGroups()
    for row in rows:
        gathered.add(row)
    groups = [group_rows(group) for group in gathered.groups()]
    # the same rows, in another order (NaN != NaN: compared as text)
    assert sorted(map(repr, coarser_rows([row for group in groups for row in group]))) == sorted(
        map(repr, coarser_rows(rows))
    )
    assert len(groups) == len({(row[0], row[1]) for row in rows})
    assert all(len(group) == 1 for group in groups)  # the drawn maps are all objects or null


def test_a_minute_row_whose_phase_map_is_no_object_is_summed_with_the_rest_after() -> None:
    """A row that cannot be summed as read (its phase sums no JSON object) leaves its key's
    rows to `coarser_rows`, which sums them as it always did (here: refuses them alike)."""
    row = (MONITORS[0].hex, "eu", "2026-11-10 09:07:00.000000", "w1", 1, 0, 0, 1, 5.0, 5.0)
    good = (*row, 5.0, '{"dns": 1.5}', '{"dns": 1}', Histogram.stored_one(5.0))
    bad = (*row, 5.0, "[1.5]", '{"dns": 1}', Histogram.stored_one(5.0))
    gathered = MinuteGroups()
    for one in (good, good, bad):
        gathered.add(one)
    (group,) = gathered.groups()
    assert isinstance(group, list)
    assert len(group) == 2
    assert group[1] is bad
