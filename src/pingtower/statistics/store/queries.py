"""Read side: what the API asks of the database, answered with domain objects."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Interval,
    LargeBinary,
    Row,
    Select,
    Text,
    Uuid,
    and_,
    any_,
    bindparam,
    case,
    cast,
    delete,
    distinct,
    func,
    literal,
    literal_column,
    not_,
    null,
    or_,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from pingtower.common.events import Status
from pingtower.statistics.domain.histogram import Histogram
from pingtower.statistics.domain.incidents import IncidentSpan
from pingtower.statistics.domain.rollups import (
    Cell,
    Resolution,
    Segment,
    ceil_to,
    cover,
    floor_to,
    minute_starts,
    resolution_for_step,
)
from pingtower.statistics.domain.series import Rendered, StoredCell
from pingtower.statistics.domain.uptime import StatusInterval
from pingtower.statistics.store import sqlite_ingest
from pingtower.statistics.store.dialect import is_postgres
from pingtower.statistics.store.ingest import cell_from_row
from pingtower.statistics.store.tables import (
    COARSE_CELLS,
    day_tails,
    incidents,
    monitors,
    results,
    rollups,
    status_intervals,
)
from pingtower.statistics.store.watermark import folded_until

# Status by its stored value: a dict lookup, where `Status(value)` goes through Enum.__call__
# (thousands of intervals for the overview).
_STATUSES = {status.value: status for status in Status}


def _among(
    session: AsyncSession, column: Any, monitor_ids: Collection[uuid.UUID]
) -> ColumnElement[bool]:
    """`column IN monitor_ids`; on PostgreSQL one array parameter (`= ANY`), so a thousand
    monitors are one bound value and one cached statement, not a thousand rendered ones."""
    if is_postgres(session):
        ids = bindparam("monitor_ids", list(monitor_ids), type_=ARRAY(Uuid()))
        return column == any_(ids)  # type: ignore[no-any-return]
    return column.in_(list(monitor_ids))  # type: ignore[no-any-return]


def _by_hex(monitor_ids: Collection[uuid.UUID]) -> dict[str, uuid.UUID]:
    """The ids by their stored form on SQLite, their hex: rows are keyed by it until the end
    (a str caches its hash, a UUID computes it in Python at every lookup)."""
    return {m.hex: m for m in monitor_ids}


# Rollup cells are keyed time first (tables.py): a monitor's minute cells are found by each
# minute's key, since a range of minutes would read every monitor's cells in it; its hour and
# day cells through the index by monitor, which a planner takes only given that index's
# condition, as tables.py writes it. Each segment is a query of its own (`_each_segment`):
# with several in one OR, SQLite looks each up without the monitors (by time alone).
_COARSE: ColumnElement[Any] = literal_column(COARSE_CELLS)


def cells_in(session: AsyncSession, segment: Segment) -> ColumnElement[bool]:
    """The rollup cells of `segment`, for a query that names its monitors."""
    r = rollups.c
    if segment.resolution is not Resolution.MINUTE:
        return and_(
            r.resolution == segment.resolution.value,
            _COARSE,
            r.bucket_start >= segment.start,
            r.bucket_start < segment.end,
        )
    minutes = minute_starts(segment.start, segment.end)
    if is_postgres(session):
        starts = bindparam(None, minutes, type_=ARRAY(DateTime(timezone=True)))
        return and_(r.resolution == Resolution.MINUTE.value, r.bucket_start == any_(starts))
    starts_column = func.json_each(_stored_minutes(minutes)).table_valued("value").c.value
    return and_(r.resolution == Resolution.MINUTE.value, r.bucket_start.in_(select(starts_column)))


def _stored_minutes(minutes: Iterable[datetime]) -> str:
    """Minute starts as one JSON array of their stored texts (SQLite): one parameter, not one
    per minute (a week has 10,080)."""
    return json.dumps([sqlite_ingest.sqlite_time(at) for at in minutes])


def _each_segment(
    session: AsyncSession,
    columns: Sequence[Any],
    where: Sequence[ColumnElement[bool]],
    segments: Sequence[Segment],
) -> Any:
    """`columns` of the rollup cells matching `where` in each of `segments` (at least one): a
    SELECT per segment, in one UNION ALL."""
    return _union([select(*columns).where(*where, cells_in(session, s)) for s in segments])


def _union(parts: Sequence[Select[Any]]) -> Any:
    return parts[0] if len(parts) == 1 else union_all(*parts)


async def monitor(session: AsyncSession, tenant: str, monitor_id: uuid.UUID) -> Row[Any] | None:
    """The monitor of this workspace, or None (unknown, deleted, or another workspace's)."""
    return (
        await session.execute(
            select(monitors).where(
                monitors.c.monitor_id == monitor_id,
                monitors.c.tenant == tenant,
                monitors.c.deleted_at.is_(None),
            )
        )
    ).first()


async def workspace_monitors(session: AsyncSession, tenant: str) -> Sequence[Row[Any]]:
    return (
        await session.execute(
            select(monitors)
            .where(monitors.c.tenant == tenant, monitors.c.deleted_at.is_(None))
            .order_by(monitors.c.name, monitors.c.monitor_id)
        )
    ).all()


class MonitorFacts(NamedTuple):
    """What the metrics snapshot needs of one live monitor: its projection's fields and its
    open status interval (None: no status known yet)."""

    monitor_id: uuid.UUID
    tenant: str
    name: str
    paused: bool
    last_latency_ms: float | None
    status: Status | None
    since: datetime | None


async def monitor_facts_page(
    session: AsyncSession, after: uuid.UUID | None, limit: int
) -> list[MonitorFacts]:
    """Up to `limit` live monitors after `after` in monitor id order, each with its open status
    interval, in one query: the metrics snapshot reads every monitor a page at a time (keyset),
    so no page holds the event loop for long however many monitors there are."""
    m, s = monitors.c, status_intervals.c
    query = (
        select(m.monitor_id, m.tenant, m.name, m.paused, m.last_latency_ms, s.status, s.start_at)
        .select_from(
            monitors.outerjoin(
                status_intervals, and_(s.monitor_id == m.monitor_id, s.end_at.is_(None))
            )
        )
        .where(m.deleted_at.is_(None))
        .order_by(m.monitor_id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(m.monitor_id > after)
    statuses = _STATUSES
    found: list[MonitorFacts] = []
    for monitor_id, tenant, name, paused, latency, status, since in (
        await session.execute(query)
    ).all():
        if found and found[-1].monitor_id == monitor_id:
            # two open intervals (never written so; the newest one is the current status)
            if since is None or found[-1].since is None or since <= found[-1].since:
                continue
            found.pop()
        known = None if status is None else statuses[status]
        found.append(MonitorFacts(monitor_id, tenant, name, paused, latency, known, since))
    return found


async def closed_intervals(
    session: AsyncSession, first: uuid.UUID, last: uuid.UUID, start: datetime, end: datetime
) -> dict[uuid.UUID, list[StatusInterval]]:
    """The closed status intervals that overlap [start, end) of the monitors with ids in
    [first, last] (a page of `monitor_facts_page`; a range, not a list of ids), per monitor.
    With each monitor's open interval they make its `timelines` entry: a monitor whose status
    did not change within the window has none."""
    found: dict[uuid.UUID, list[StatusInterval]] = defaultdict(list)
    t = status_intervals.c
    rows = await session.execute(
        select(t.monitor_id, t.start_at, t.end_at, t.status).where(
            t.monitor_id >= first,
            t.monitor_id <= last,
            t.end_at.is_not(None),
            t.end_at > start,
            t.start_at < end,
        )
    )
    statuses = _STATUSES
    for monitor_id, start_at, end_at, status in rows.all():
        found[monitor_id].append(StatusInterval(start_at, end_at, statuses[status]))
    return found


async def timelines(
    session: AsyncSession, monitor_ids: Collection[uuid.UUID], start: datetime, end: datetime
) -> dict[uuid.UUID, list[StatusInterval]]:
    """Status intervals that overlap [start, end), per monitor, in time order."""
    found: dict[uuid.UUID, list[StatusInterval]] = defaultdict(list)
    if not monitor_ids:
        return found
    t = status_intervals
    rows = await session.execute(
        select(t.c.monitor_id, t.c.start_at, t.c.end_at, t.c.status)
        .where(
            _among(session, t.c.monitor_id, monitor_ids),
            t.c.start_at < end,
            or_(t.c.end_at.is_(None), t.c.end_at > start),
        )
        .order_by(t.c.monitor_id, t.c.start_at)
    )
    statuses = _STATUSES
    # fetched at once: row by row, the async adapter's fetchone costs more than the row
    for monitor_id, start_at, end_at, status in rows.all():
        found[monitor_id].append(StatusInterval(start_at, end_at, statuses[status]))
    return found


async def current_statuses(
    session: AsyncSession, monitor_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, tuple[Status, datetime]]:
    """The open interval of each monitor: its status and since when."""
    if not monitor_ids:
        return {}
    t = status_intervals
    rows = await session.execute(
        select(t.c.monitor_id, t.c.status, t.c.start_at).where(
            _among(session, t.c.monitor_id, monitor_ids), t.c.end_at.is_(None)
        )
    )
    return {
        monitor_id: (_STATUSES[status], start_at) for monitor_id, status, start_at in rows.all()
    }


async def range_cells(
    session: AsyncSession, monitor_ids: Collection[uuid.UUID], start: datetime, end: datetime
) -> dict[uuid.UUID, Cell]:
    """One merged rollup cell per monitor (all regions) for [start, end) widened to minutes,
    read from the coarsest rollups that fit (see `cover`)."""
    segments = cover(start, end, await folded_until(session))
    if not monitor_ids or not segments:
        return {}
    among = _among(session, rollups.c.monitor_id, monitor_ids)
    rows = await session.execute(_each_segment(session, list(rollups.c), [among], segments))
    return _merge_rows(rows.all(), lambda row: row.monitor_id)


async def recent_histograms(
    session: AsyncSession, monitor_ids: Collection[uuid.UUID], start: datetime, end: datetime
) -> dict[uuid.UUID, Histogram]:
    """Latency histograms per monitor over [floor_hour(start), end) for a window shorter than a
    day that ends now: the day tail of yesterday from that hour (or, where it no longer
    matches yesterday's hour cells, those cells), today's day cell and the few minute cells
    compaction has not folded yet. A dashboard of a thousand monitors so merges ~8 parts each
    instead of ~20 (25 hour and up to 120 minute cells before compaction)."""
    if not monitor_ids:
        return {}
    first_hour = floor_to(start, Resolution.HOUR.length)
    midnight = floor_to(end, Resolution.DAY.length)
    # Hour and day cells hold what compaction folded (before `folded`), minute cells the rest.
    # Today's day cell holds [midnight, folded) when folded is past midnight; the hour cell of
    # the watermark's hour holds [that hour, folded).
    folded = max(
        first_hour, min(await folded_until(session), ceil_to(end, Resolution.MINUTE.length))
    )
    use_day = first_hour < midnight < folded
    if not is_postgres(session):
        return await _recent_histograms_on_sqlite(
            session, monitor_ids, first_hour, midnight if use_day else None, folded, end
        )
    hours = Segment(Resolution.HOUR, first_hour, midnight if use_day else folded)
    minutes = Segment(Resolution.MINUTE, folded, end)
    if not use_day:
        found = await _histograms(session, monitor_ids, [hours, minutes])
        return {m: Histogram.from_bytes_many(parts) for m, parts in found.items()}
    today = Segment(Resolution.DAY, midnight, midnight + Resolution.DAY.length)
    # Yesterday from first_hour comes from its day tail where that still holds all of its
    # hour cells: their latency counts add up to the tail's (a late result since makes them
    # exceed it); otherwise from those hour cells.
    tails, rest, stale = await _recent_parts(
        session, monitor_ids, first_hour, [today, minutes], hours
    )
    if stale:
        tails.update(await _histograms(session, stale, [hours]))
    return {
        m: Histogram.from_bytes_many([*tails.get(m, ()), *rest.get(m, ())]) for m in {*tails, *rest}
    }


async def _recent_histograms_on_sqlite(
    session: AsyncSession,
    monitor_ids: Collection[uuid.UUID],
    first_hour: datetime,
    midnight: datetime | None,
    folded: datetime,
    end: datetime,
) -> dict[uuid.UUID, Histogram]:
    """`recent_histograms` on SQLite (`midnight` None when today's day cell is not used): the
    same parts read as the driver's plain rows in one trip, the hour cells' latency counts
    summed by SQLite (a row per monitor, not one per hour cell), with constant statements.
    Through SQLAlchemy the statement was built and compiled per page and every row (~30 a
    monitor a day in) went through its result processing: most of the metrics snapshot's
    CPU besides the merging (bench/README.md, performance round 7)."""
    ids = _by_hex(monitor_ids)
    hex_ids = json.dumps(list(ids))
    times = sqlite_ingest.sqlite_time
    minutes = _stored_minutes(minute_starts(folded, end))
    if midnight is None:
        span = (hex_ids, times(first_hour), times(folded), minutes)
        rows = await sqlite_ingest.on_thread(
            session, lambda db: db.execute(_HOURS_AND_MINUTES, span).fetchall()
        )
        parts: dict[str, list[bytes]] = defaultdict(list)
        for stored_id, histogram in rows:
            parts[stored_id].append(histogram)
        return {ids[key]: Histogram.from_bytes_many(found) for key, found in parts.items()}
    day = (hex_ids, times(first_hour), times(midnight), minutes)
    hours = (times(first_hour), times(midnight))

    def read(db: Any) -> tuple[list[Any], set[str], list[Any]]:
        rows = db.execute(_RECENT_PARTS, day).fetchall()
        # per monitor: latency count of the tails minus that of the hour cells
        gap: dict[str, int] = defaultdict(int)
        for stored_id, _, n, which in rows:
            gap[stored_id] += -n if which == "h" else n
        stale = {key for key, difference in gap.items() if difference}
        if not stale:
            return rows, stale, []
        return rows, stale, db.execute(_HOURS_OF, (json.dumps(list(stale)), *hours)).fetchall()

    rows, stale, stale_rows = await sqlite_ingest.on_thread(session, read)
    tails: dict[str, list[bytes]] = defaultdict(list)
    rest: dict[str, list[bytes]] = defaultdict(list)
    for stored_id, histogram, _, which in rows:
        if which == "t":
            if stored_id not in stale:
                tails[stored_id].append(histogram)
        elif which == "r":
            rest[stored_id].append(histogram)
    # the stale monitors' tails give way to their hour cells
    for stored_id, histogram in stale_rows:
        tails[stored_id].append(histogram)
    return {
        ids[key]: Histogram.from_bytes_many([*tails.get(key, ()), *rest.get(key, ())])
        for key in {*tails, *rest}
    }


# The monitors as a JSON array of their stored ids (one parameter, one prepared statement)
_AMONG = "monitor_id IN (SELECT value FROM json_each(?1))"
# The minute cells at the starts of a JSON array (`_stored_minutes`), looked up by key
_MINUTES = "resolution = 'minute' AND bucket_start IN (SELECT value FROM json_each(?4))"
# ?2 the first hour, ?3 the watermark, ?4 the minutes from it to the end (a JSON array)
_HOURS_AND_MINUTES = (
    f"SELECT monitor_id, histogram FROM rollups WHERE {_AMONG} AND resolution = 'hour' "
    f"AND {COARSE_CELLS} AND bucket_start >= ?2 AND bucket_start < ?3 "
    f"UNION ALL SELECT monitor_id, histogram FROM rollups WHERE {_AMONG} AND {_MINUTES}"
)
# ?2 the first hour, ?3 midnight, ?4 the minutes from the watermark to the end: the day tails
# from the first hour ('t', with their latency counts), today's day cell and the minute
# cells not folded ('r'), and per monitor the latency count of its hour cells from the first
# hour to midnight ('h'), which the tails' must equal for them to hold those cells
_RECENT_PARTS = (
    f"SELECT monitor_id, histogram, latency_count, 't' FROM day_tails WHERE {_AMONG} "
    "AND bucket_start = ?2 "
    f"UNION ALL SELECT monitor_id, histogram, 0, 'r' FROM rollups WHERE {_AMONG} "
    f"AND resolution = 'day' AND {COARSE_CELLS} AND bucket_start = ?3 "
    f"UNION ALL SELECT monitor_id, histogram, 0, 'r' FROM rollups WHERE {_AMONG} "
    f"AND {_MINUTES} "
    f"UNION ALL SELECT monitor_id, NULL, sum(latency_count), 'h' FROM rollups WHERE {_AMONG} "
    f"AND resolution = 'hour' AND {COARSE_CELLS} AND bucket_start >= ?2 AND bucket_start < ?3 "
    "GROUP BY monitor_id"
)
_HOURS_OF = (
    f"SELECT monitor_id, histogram FROM rollups WHERE {_AMONG} AND resolution = 'hour' "
    f"AND {COARSE_CELLS} AND bucket_start >= ?2 AND bucket_start < ?3"
)


async def _recent_parts(
    session: AsyncSession,
    monitor_ids: Collection[uuid.UUID],
    first_hour: datetime,
    others: Sequence[Segment],
    hours: Segment,
) -> tuple[dict[uuid.UUID, list[bytes]], dict[uuid.UUID, list[bytes]], list[uuid.UUID]]:
    """In one query (PostgreSQL): per monitor the histograms of its day tails from
    `first_hour` and of its rollup cells in `others`, and the monitors whose tails no longer
    hold their cells in `hours` (their latency counts differ)."""
    r, t = rollups.c, day_tails.c
    among = _among(session, r.monitor_id, monitor_ids)
    parts = union_all(
        select(
            t.monitor_id.label("monitor_id"),
            t.histogram,
            t.latency_count.label("n"),
            literal_column("'t'").label("kind"),
        ).where(_among(session, t.monitor_id, monitor_ids), t.bucket_start == first_hour),
        *(
            select(
                r.monitor_id,
                r.histogram,
                literal_column("0").label("n"),
                literal_column("'r'"),
            ).where(among, cells_in(session, segment))
            for segment in others
        ),
        select(
            r.monitor_id,
            cast(null(), LargeBinary),
            r.latency_count,
            literal_column("'h'"),
        ).where(among, cells_in(session, hours)),
    ).subquery()
    tails: dict[uuid.UUID, list[bytes]] = defaultdict(list)
    rest: dict[uuid.UUID, list[bytes]] = defaultdict(list)
    # per monitor: latency count of the tails minus that of the hour cells
    gap: dict[uuid.UUID, int] = defaultdict(int)
    kind = parts.c.kind
    # One row per monitor holding its histograms: a thousand rows through the driver and
    # SQLAlchemy instead of several thousand.
    grouped = await session.execute(
        select(
            parts.c.monitor_id,
            func.array_agg(parts.c.histogram).filter(kind == "t"),
            func.array_agg(parts.c.histogram).filter(kind == "r"),
            func.sum(parts.c.n).filter(kind == "t"),
            func.sum(parts.c.n).filter(kind == "h"),
        ).group_by(parts.c.monitor_id)
    )
    for monitor_id, tail, cells, tail_count, hour_count in grouped.all():
        if tail:
            tails[monitor_id] = tail
        if cells:
            rest[monitor_id] = cells
        gap[monitor_id] = (tail_count or 0) - (hour_count or 0)
    stale = [m for m, difference in gap.items() if difference]
    for m in stale:
        tails.pop(m, None)
    return tails, rest, stale


async def _histograms(
    session: AsyncSession, monitor_ids: Collection[uuid.UUID], segments: Sequence[Segment]
) -> dict[uuid.UUID, list[bytes]]:
    """The stored histograms of the monitors' rollup cells in `segments`, per monitor
    (PostgreSQL): one row per monitor holding its histograms, a thousand rows through the
    driver and SQLAlchemy instead of several thousand."""
    r = rollups.c
    among = _among(session, r.monitor_id, monitor_ids)
    cells = _each_segment(session, [r.monitor_id, r.histogram], [among], segments).subquery()
    grouped = await session.execute(
        select(cells.c.monitor_id, func.array_agg(cells.c.histogram)).group_by(cells.c.monitor_id)
    )
    return dict(grouped.all())


class StepCells(NamedTuple):
    """The cells of a series by step start: `finished`, (step start, stored point) of each
    step that is one finished cell, in time order (`series.points_json`), or `rendered`, those
    points rendered by PostgreSQL when they are consecutive steps; `cells`, every other
    step's cells."""

    finished: Sequence[tuple[datetime, str]]
    cells: dict[datetime, list[StoredCell]]
    rendered: Rendered | None = None


async def step_cells(
    session: AsyncSession,
    monitor_id: uuid.UUID,
    start: datetime,
    end: datetime,
    step: timedelta,
    region: str | None = None,
) -> StepCells:
    """Rollup cells of one monitor (one region, or all) grouped by the bucket of `step`
    (aligned on the epoch) they fall in, for buckets that start within [floor(start), end).
    Not merged: most steps hold one cell, which the timeseries reads as it is
    (`domain/series.py`); a finished one comes as its stored point alone."""
    resolution = resolution_for_step(step)
    first = floor_to(start, step)
    # Cells of `resolution` are complete only when compaction folded their whole bucket; from
    # that bucket on, finer cells answer.
    folded = await folded_until(session)
    complete = floor_to(folded, resolution.length)
    if resolution is Resolution.MINUTE:
        complete = first
    split = max(first, min(end, complete))
    if resolution is Resolution.DAY:
        # The day in progress: its folded hours from hour cells (an hour cell lies inside one
        # day, so inside one step), only what follows from minute cells.
        rest = cover(split, end, folded)
    else:
        rest = [Segment(Resolution.MINUTE, split, end)] if split < end else []
    whole = Segment(resolution, first, split)
    # Cells of `resolution` before `split` start their step already when it is one bucket long.
    if step != resolution.length or resolution is Resolution.MINUTE:
        rows = await _full_rows(session, monitor_id, [whole, *rest], region, None)
        return StepCells([], _cells(rows, step, None))
    # A finished cell is a step of its own unless the monitor has several regions there:
    # then every step merges the cells of its regions, from their histograms.
    finished, rendered, several, unheld = await _stored_points(session, monitor_id, whole, region)
    if several:
        rows = await _full_rows(session, monitor_id, [whole, *rest], region, None)
        return StepCells([], _cells(rows, step, split))
    # the cells of `whole` whose figures do not hold (a late result since) are read whole; when
    # there are none, that segment is not read again at all
    segments = [whole, *rest] if unheld else rest
    rows = await _full_rows(session, monitor_id, segments, region, whole)
    return StepCells(finished, _cells(rows, step, split), rendered)


def _where(monitor_id: uuid.UUID, region: str | None) -> list[ColumnElement[bool]]:
    r = rollups.c
    found = [r.monitor_id == monitor_id]
    if region is not None:
        found.append(r.region == region)
    return found


def _holds() -> ColumnElement[bool]:
    """The row's stored figures are those of what it holds now (domain/cell_figures.py)."""
    r = rollups.c
    return and_(r.figures_checks.is_not(None), r.figures_checks == r.up + r.degraded + r.down)


async def _stored_points(
    session: AsyncSession, monitor_id: uuid.UUID, segment: Segment, region: str | None
) -> tuple[Sequence[tuple[datetime, str]], Rendered | None, bool, int]:
    """The stored points of the cells of `segment` whose stored figures hold: as (bucket
    start, stored point) in time order, or rendered when they are consecutive buckets (on
    PostgreSQL); whether the segment's cells come from more than one region; how many of its
    cells have no figures that hold."""
    r = rollups.c
    where = (*_where(monitor_id, region), cells_in(session, segment))
    if is_postgres(session):
        rendered, several, unheld = await _rendered_points(session, where, segment)
        if rendered is not None or several:
            return [], rendered, several, unheld
    else:
        summary = select(func.count(distinct(r.region)), func.count().filter(not_(_holds())))
        regions, unheld = (await session.execute(summary.where(*where))).one()
        several = regions > 1
    rows = await session.execute(
        select(r.bucket_start, r.point_json).where(*where, _holds()).order_by(r.bucket_start)
    )
    # fetched at once: row by row, the async adapter's fetchone costs more than the row
    return [(at, text) for at, text in rows.all()], None, several, unheld


# "at" as pydantic-core renders a UTC datetime (whole seconds: bucket starts are)
_AT_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS"Z"'


async def _rendered_points(
    session: AsyncSession, where: Sequence[ColumnElement[bool]], segment: Segment
) -> tuple[Rendered | None, bool, int]:
    """PostgreSQL renders the stored points whose figures hold, "at" and all, into one text
    (as UTF-8 bytes: nothing for the driver to decode or this process to encode), instead of
    8,760 rows through the driver and SQLAlchemy for a year of hours, and instead of this
    process joining 8,760 strings. None when that text would not be one run of consecutive
    buckets in time order: no cell holds, or a bucket between two that hold does not (a late
    result), or there is a gap."""
    r = rollups.c
    # The rows come to the aggregates in the index's order, not through an ORDER BY of the
    # text's aggregate (which would sort the 3 MB of points again). Every aggregate of the
    # query sees the rows in one order, so comparing the times in that order with the times
    # sorted (8,760 timestamps) says whether the text is in time order. The points are
    # rendered by the aggregate's argument, not in the subquery: its rows stay narrow.
    cells = (
        select(
            type_coerce(r.bucket_start, DateTime(timezone=True)).label("at"),
            r.point_json,
            _holds().label("holds"),
            r.region,
        )
        .where(*where)
        .order_by(r.bucket_start)
        .subquery()
    )
    held = cells.c.holds
    at = cells.c.at
    point = (
        literal('{"at":"', Text)
        + func.to_char(func.timezone("UTC", at), _AT_FORMAT)
        + literal('",', Text)
        + cells.c.point_json
    )
    arrived = func.array_agg(at).filter(held)
    by_time = func.array_agg(aggregate_order_by(at, at)).filter(held)
    first, last, count = func.min(at).filter(held), func.max(at).filter(held), func.count()
    held_count = count.filter(held)
    low, high = func.min(cells.c.region), func.max(cells.c.region)
    length = segment.resolution.length
    one_run = and_(
        arrived == by_time,
        low == high,
        last - first == (held_count - 1) * literal(length, Interval),
    )
    # The text only when it is one run: a fallback would not use it. (PostgreSQL computes
    # each of the repeated aggregates once.)
    text = case(
        (one_run, func.convert_to(func.string_agg(point, literal(",", Text)).filter(held), "UTF8"))
    )
    found = await session.execute(
        select(first, held_count, text, low != high, count.filter(not_(held)))
    )
    start, steps, rendered, several, unheld = found.one()
    if rendered is None:
        return None, bool(several), unheld
    return Rendered(start, steps, rendered), False, unheld


async def _full_rows(
    session: AsyncSession,
    monitor_id: uuid.UUID,
    segments: Sequence[Segment],
    region: str | None,
    without_stored: Segment | None,
) -> Sequence[Row[Any]]:
    """The cells of the segments as StoredCell fields after the bucket start, the phase maps
    as JSON text; `without_stored`: not the cells of that segment whose stored figures hold
    (read by `_stored_points`)."""
    r = rollups.c
    # The phase maps come as their JSON text and are decoded below in one call for all rows:
    # decoding 4,000 small documents one by one (the driver's JSON codec) cost more than the
    # rest of the row.
    columns = [
        r.resolution,
        r.region,
        r.bucket_start,
        r.up,
        r.degraded,
        r.down,
        r.latency_count,
        r.latency_min,
        r.latency_max,
        r.latency_sum,
        cast(r.phase_sums, Text).label("phase_sums"),
        cast(r.phase_counts, Text).label("phase_counts"),
        r.histogram,
    ]
    where = _where(monitor_id, region)
    parts = [
        select(*columns).where(
            *where,
            cells_in(session, segment),
            *((not_(_holds()),) if segment == without_stored else ()),
        )
        for segment in segments
    ]
    cells = _union(parts).subquery()
    # In key order, so cells of one step always merge in the same order: float sums (phase
    # and latency) depend on it in their last digit.
    query = select(*list(cells.c)[2:]).order_by(
        cells.c.resolution, cells.c.bucket_start, cells.c.region
    )
    return (await session.execute(query)).all()


def _cells(
    rows: Sequence[Any], step: timedelta, aligned_before: datetime | None
) -> dict[datetime, list[StoredCell]]:
    """Rows by the start of their step; before `aligned_before` a row starts its step."""
    phases = json.loads("[" + ",".join(f"{row[8]},{row[9]}" for row in rows) + "]")
    found: dict[datetime, list[StoredCell]] = defaultdict(list)
    # Unpacked as tuples: attribute access on 2,000 rows shows in the profile.
    for i, (at, up, degraded, down, count, low, high, total, _, _, histogram) in enumerate(rows):
        aligned = aligned_before is not None and at < aligned_before
        key = at if aligned else floor_to(at, step)
        found[key].append(
            StoredCell(
                up,
                degraded,
                down,
                count,
                low,
                high,
                total,
                phases[2 * i],
                phases[2 * i + 1],
                histogram,
            )
        )
    return found


K = TypeVar("K")


def _merge_rows(rows: Iterable[Any], key: Callable[[Any], K]) -> dict[K, Cell]:
    """Rollup rows merged into one cell per key; histograms merged in bulk (the costly part)."""
    merged: dict[K, Cell] = {}
    histograms: dict[K, list[bytes]] = defaultdict(list)
    for row in rows:
        k = key(row)
        cell = cell_from_row(row, histogram=False)
        if k in merged:
            merged[k].merge(cell)
        else:
            merged[k] = cell
        histograms[k].append(row.histogram)
    for k, parts in histograms.items():
        merged[k].histogram = Histogram.from_bytes_many(parts)
    return merged


async def incident_spans(
    session: AsyncSession, monitor_ids: Collection[uuid.UUID], start: datetime, end: datetime
) -> dict[uuid.UUID, list[IncidentSpan]]:
    """Incidents that overlap [start, end), per monitor."""
    found: dict[uuid.UUID, list[IncidentSpan]] = defaultdict(list)
    if not monitor_ids:
        return found
    i = incidents
    rows = await session.execute(
        select(i.c.monitor_id, i.c.started_at, i.c.resolved_at)
        .where(
            _among(session, i.c.monitor_id, monitor_ids),
            i.c.started_at < end,
            or_(i.c.resolved_at.is_(None), i.c.resolved_at > start),
        )
        .order_by(i.c.started_at)
    )
    for row in rows.all():
        found[row.monitor_id].append(IncidentSpan(row.started_at, row.resolved_at))
    return found


async def incidents_page(
    session: AsyncSession,
    monitor_id: uuid.UUID,
    *,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> Sequence[Row[Any]]:
    """Newest first, keyset-paginated on (started_at, incident_id)."""
    i = incidents
    query = select(i).where(i.c.monitor_id == monitor_id)
    if after is not None:
        at, incident_id = after
        query = query.where(
            or_(i.c.started_at < at, and_(i.c.started_at == at, i.c.incident_id < incident_id))
        )
    query = query.order_by(i.c.started_at.desc(), i.c.incident_id.desc()).limit(limit)
    return (await session.execute(query)).all()


async def prune_results(session: AsyncSession, before: datetime, batch: int) -> int:
    """Delete up to `batch` raw results that finished before `before`; returns how many."""
    ids = select(results.c.id).where(results.c.finished_at < before).limit(batch)
    deleted = await session.execute(delete(results).where(results.c.id.in_(ids.scalar_subquery())))
    return int(deleted.rowcount)  # type: ignore[attr-defined]


async def prune_rollups(session: AsyncSession, resolution: Resolution, before: datetime) -> int:
    """Delete the cells of `resolution` older than `before` (rollups are few: one statement)."""
    deleted = await session.execute(
        delete(rollups).where(
            rollups.c.resolution == resolution.value, rollups.c.bucket_start < before
        )
    )
    return int(deleted.rowcount)  # type: ignore[attr-defined]
