"""Read side: what the API asks of the database, answered with domain objects."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Row,
    Text,
    Uuid,
    and_,
    any_,
    bindparam,
    cast,
    delete,
    func,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
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
    resolution_for_step,
)
from pingtower.statistics.domain.series import StoredCell
from pingtower.statistics.domain.uptime import StatusInterval
from pingtower.statistics.store.dialect import is_postgres
from pingtower.statistics.store.ingest import cell_from_row
from pingtower.statistics.store.tables import (
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


async def all_monitors(session: AsyncSession) -> Sequence[Row[Any]]:
    """Every live monitor of every workspace (for the metrics snapshot)."""
    return (
        await session.execute(
            select(monitors).where(monitors.c.deleted_at.is_(None)).order_by(monitors.c.tenant)
        )
    ).all()


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
    for monitor_id, start_at, end_at, status in rows:
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
    return {monitor_id: (_STATUSES[status], start_at) for monitor_id, status, start_at in rows}


async def range_cells(
    session: AsyncSession, monitor_ids: Collection[uuid.UUID], start: datetime, end: datetime
) -> dict[uuid.UUID, Cell]:
    """One merged rollup cell per monitor (all regions) for [start, end) widened to minutes,
    read from the coarsest rollups that fit (see `cover`)."""
    segments = cover(start, end, await folded_until(session))
    if not monitor_ids or not segments:
        return {}
    r = rollups
    rows = await session.execute(
        select(r).where(
            _among(session, r.c.monitor_id, monitor_ids),
            or_(
                *(
                    and_(
                        r.c.resolution == segment.resolution.value,
                        r.c.bucket_start >= segment.start,
                        r.c.bucket_start < segment.end,
                    )
                    for segment in segments
                )
            ),
        )
    )
    return _merge_rows(rows, lambda row: row.monitor_id)


async def recent_histograms(
    session: AsyncSession, monitor_ids: Collection[uuid.UUID], start: datetime, end: datetime
) -> dict[uuid.UUID, Histogram]:
    """Latency histograms per monitor over [floor_hour(start), end) for a window shorter than a
    day that ends now: today's day cell plus the hour cells before midnight, and the few minute
    cells compaction has not folded yet. A dashboard of a thousand monitors so reads ~20 narrow
    rows each instead of 25 hour and up to 120 minute cells."""
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
    hours_until = midnight if use_day else folded
    r = rollups
    parts = [
        and_(
            r.c.resolution == Resolution.HOUR.value,
            r.c.bucket_start >= first_hour,
            r.c.bucket_start < hours_until,
        ),
        and_(
            r.c.resolution == Resolution.MINUTE.value,
            r.c.bucket_start >= folded,
            r.c.bucket_start < end,
        ),
    ]
    if use_day:
        parts.append(and_(r.c.resolution == Resolution.DAY.value, r.c.bucket_start == midnight))
    where = (_among(session, r.c.monitor_id, monitor_ids), or_(*parts))
    if is_postgres(session):
        # One row per monitor holding its ~20 histograms: a thousand rows through the driver
        # and SQLAlchemy instead of twenty thousand.
        grouped = await session.execute(
            select(r.c.monitor_id, func.array_agg(r.c.histogram))
            .where(*where)
            .group_by(r.c.monitor_id)
        )
        return {m: Histogram.from_bytes_many(found) for m, found in grouped}
    rows = await session.execute(select(r.c.monitor_id, r.c.histogram).where(*where))
    stored: dict[uuid.UUID, list[bytes]] = defaultdict(list)
    for monitor_id, histogram in rows:
        stored[monitor_id].append(histogram)
    return {m: Histogram.from_bytes_many(found) for m, found in stored.items()}


async def step_cells(
    session: AsyncSession,
    monitor_id: uuid.UUID,
    start: datetime,
    end: datetime,
    step: timedelta,
    region: str | None = None,
) -> dict[datetime, list[StoredCell]]:
    """Rollup cells of one monitor (one region, or all) grouped by the bucket of `step`
    (aligned on the epoch) they fall in, for buckets that start within [floor(start), end).
    Not merged: most steps hold one cell, which the timeseries reads as it is
    (`domain/series.py`)."""
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
    r = rollups
    # The phase maps come as their JSON text and are decoded below in one call for all rows:
    # decoding 4,000 small documents one by one (the driver's JSON codec) cost more than the
    # rest of the row.
    query = select(
        r.c.bucket_start,
        r.c.up,
        r.c.degraded,
        r.c.down,
        r.c.latency_count,
        r.c.latency_min,
        r.c.latency_max,
        r.c.latency_sum,
        cast(r.c.phase_sums, Text).label("phase_sums"),
        cast(r.c.phase_counts, Text).label("phase_counts"),
        r.c.histogram,
    ).where(
        r.c.monitor_id == monitor_id,
        or_(
            *(
                and_(
                    r.c.resolution == segment.resolution.value,
                    r.c.bucket_start >= segment.start,
                    r.c.bucket_start < segment.end,
                )
                for segment in [Segment(resolution, first, split), *rest]
            )
        ),
    )
    if region is not None:
        query = query.where(r.c.region == region)
    rows = (await session.execute(query)).all()
    phases = json.loads("[" + ",".join(f"{row[8]},{row[9]}" for row in rows) + "]")
    found: dict[datetime, list[StoredCell]] = defaultdict(list)
    # Cells of `resolution` before `split` start their step already when it is one bucket long.
    aligned = step == resolution.length
    # Unpacked as tuples: attribute access on 2,000 rows shows in the profile.
    for i, (at, up, degraded, down, count, low, high, total, _, _, histogram) in enumerate(rows):
        key = at if aligned and at < split else floor_to(at, step)
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
    for row in rows:
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
