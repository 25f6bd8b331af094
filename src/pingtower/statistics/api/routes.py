"""/api/v1/stats: overview, uptime, incidents and latency timeseries; every query is scoped to
the caller's workspace, and another workspace's monitor answers 404."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import accumulate, repeat
from operator import add
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel
from pydantic_core import to_json
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pingtower.common.events import Status
from pingtower.common.http.problems import not_found
from pingtower.common.security import Principal
from pingtower.statistics.api.params import (
    Cursor,
    From,
    To,
    Viewer,
    decode_cursor,
    encode_cursor,
    invalid,
)
from pingtower.statistics.api.schemas import (
    DailyUptime,
    Incident,
    IncidentPage,
    Overview,
    OverviewItem,
    Timeseries,
    Uptime,
)
from pingtower.statistics.domain import windows
from pingtower.statistics.domain.histogram import ALPHA
from pingtower.statistics.domain.rollups import floor_to, resolution_for_step
from pingtower.statistics.domain.series import points_json
from pingtower.statistics.domain.status_page import DAYS, daily_uptime, day_windows
from pingtower.statistics.domain.uptime import uptime
from pingtower.statistics.snapshot import LatencySnapshot
from pingtower.statistics.store import queries
from pingtower.statistics.store.figures import window_figures

# A year of hours, leap year and the hour in progress included: 366 * 24 + 1.
MAX_POINTS = 8785
MAX_DAYS = 366
T = TypeVar("T")
SortKey = Literal[
    "name", "status", "since", "uptime_24h", "uptime_30d", "p95_24h_ms", "last_check_at"
]


def seconds(delta: timedelta | None) -> float | None:
    return None if delta is None else delta.total_seconds()


def build_router(
    sessions: async_sessionmaker[AsyncSession],
    clock: Callable[[], datetime],
    latency: LatencySnapshot | None = None,
) -> APIRouter:
    router = APIRouter(prefix="/stats", tags=["statistics"])

    async def owned(session: AsyncSession, principal: Principal, monitor_id: uuid.UUID) -> Any:
        row = await queries.monitor(session, principal.tenant, monitor_id)
        if row is None:
            raise not_found("monitor")
        return row

    async def overview_items(rows: Sequence[Any], now: datetime) -> list[OverviewItem]:
        day, month = now - timedelta(hours=24), now - timedelta(days=30)
        ids = [row.monitor_id for row in rows]
        cached = latency.fresh(now) if latency is not None else {}
        unknown = [m for m in ids if m not in cached]

        async def read(query: Callable[[AsyncSession], Awaitable[T]]) -> T:
            async with sessions() as session:
                return await query(session)

        # Three connections at once: the database answers one query while this process
        # decodes another's rows (the histograms of a thousand monitors take the longest).
        current, timelines, live = await asyncio.gather(
            read(lambda session: queries.current_statuses(session, ids)),
            read(lambda session: queries.timelines(session, ids, month, now)),
            read(lambda session: queries.recent_histograms(session, unknown, day, now)),
        )
        p95 = {**cached, **{m: h.quantile(0.95) for m, h in live.items()}}
        items = []
        for row in rows:
            monitor_status, since = current.get(row.monitor_id, (Status.UNKNOWN, None))
            timeline = timelines.get(row.monitor_id, [])
            items.append(
                OverviewItem(
                    monitor_id=row.monitor_id,
                    name=row.name,
                    type=row.type,
                    tags=list(row.tags or []),
                    public=row.public,
                    status=Status.PAUSED if row.paused else monitor_status,
                    since=since,
                    uptime_24h=uptime(timeline, day, now).ratio,
                    uptime_30d=uptime(timeline, month, now).ratio,
                    p95_24h_ms=p95.get(row.monitor_id),
                    last_check_at=row.last_check_at,
                    last_latency_ms=row.last_latency_ms,
                )
            )
        return items

    @router.get("/overview", response_model=Overview, summary="Every monitor of the workspace")
    async def overview(
        principal: Viewer,
        sort: SortKey = "name",
        order: Literal["asc", "desc"] = "asc",
        status: Annotated[list[Status] | None, Query(description="Keep these statuses")] = None,
        tag: Annotated[str | None, Query(max_length=100)] = None,
        q: Annotated[str | None, Query(max_length=200, description="Name contains")] = None,
        limit: Annotated[
            int | None, Query(ge=1, le=1000, description="Page size; all monitors when absent")
        ] = None,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> Response:
        """Offset pagination with a total: the order is by computed figures (uptime, p95), which
        no keyset in the database follows. Sorted by name and not filtered by status, only the
        page's monitors get their figures computed; otherwise all are, then sorted and cut.
        Without `limit` every monitor comes back in one answer (what the dashboard expects)."""
        now = clock()
        async with sessions() as session:
            rows = list(await queries.workspace_monitors(session, principal.tenant))
        if tag is not None:
            rows = [row for row in rows if tag in (row.tags or [])]
        if q is not None:
            rows = [row for row in rows if q.lower() in row.name.lower()]
        if sort == "name" and not status:
            rows.sort(key=lambda row: (row.name, str(row.monitor_id)), reverse=order == "desc")
            total = len(rows)
            items = await overview_items(rows[offset:][:limit], now)
        else:
            items = await overview_items(rows, now)
            if status:
                items = [item for item in items if item.status in status]
            present = [item for item in items if getattr(item, sort) is not None]
            absent = [item for item in items if getattr(item, sort) is None]
            present.sort(
                key=lambda item: (getattr(item, sort), item.name, str(item.monitor_id)),
                reverse=order == "desc",
            )
            # Monitors without the figure go last whichever the order.
            items = present + absent
            total = len(items)
            items = items[offset:][:limit]
        following = offset + len(items)
        return as_json(
            Overview(
                generated_at=now,
                items=items,
                total=total,
                offset=offset,
                limit=limit,
                next_offset=following if following < total else None,
            )
        )

    @router.get(
        "/monitors/{monitor_id}/uptime",
        response_model=Uptime,
        summary="Time-weighted uptime and check success ratio for a window",
    )
    async def monitor_uptime(
        monitor_id: uuid.UUID,
        principal: Viewer,
        window: Annotated[str | None, Query(description="24h, 7d, 30d, 90d or 365d")] = None,
        month: Annotated[str | None, Query(description="A calendar month, e.g. 2026-10")] = None,
        start: From = None,
        end: To = None,
    ) -> Uptime:
        now = clock()
        try:
            lo, hi = windows.resolve(now, window=window, start=start, end=end, month=month)
        except windows.WindowError as error:
            raise invalid(error) from None
        async with sessions() as session:
            await owned(session, principal, monitor_id)
            figures = (await window_figures(session, [monitor_id], lo, hi))[monitor_id]
        return Uptime(
            monitor_id=monitor_id,
            start=lo,
            end=hi,
            uptime=figures.uptime.ratio,
            up_seconds=figures.uptime.up.total_seconds(),
            downtime_seconds=figures.uptime.down.total_seconds(),
            excluded_seconds=figures.uptime.excluded.total_seconds(),
            checks=figures.cell.checks,
            successful_checks=figures.cell.successful,
            check_success_ratio=figures.success_ratio,
            incident_count=len(figures.incidents),
            mttr_seconds=seconds(figures.mttr),
            mtbf_seconds=seconds(figures.mtbf),
        )

    @router.get(
        "/monitors/{monitor_id}/daily",
        response_model=DailyUptime,
        summary="Time-weighted uptime of each of the last UTC days (the status page's figures)",
    )
    async def monitor_daily(
        monitor_id: uuid.UUID,
        principal: Viewer,
        days: Annotated[
            int, Query(ge=1, le=MAX_DAYS, description="How many days, today last")
        ] = DAYS,
    ) -> Response:
        now = clock()
        windows = day_windows(now, days)
        start = windows[0][0]
        async with sessions() as session:
            await owned(session, principal, monitor_id)
            timeline = (await queries.timelines(session, [monitor_id], start, now)).get(
                monitor_id, []
            )
        figures = daily_uptime(timeline, windows)
        return as_json(
            DailyUptime.model_validate(
                {
                    "monitor_id": monitor_id,
                    "start": start,
                    "end": now,
                    "uptime": uptime(timeline, start, now).ratio,
                    "days": [
                        {
                            "date": day.date(),
                            "uptime": figure.ratio,
                            "downtime_seconds": figure.down.total_seconds(),
                        }
                        for (day, _), figure in zip(windows, figures, strict=True)
                    ],
                }
            )
        )

    @router.get(
        "/monitors/{monitor_id}/incidents",
        response_model=IncidentPage,
        summary="Incidents of a monitor, newest first",
    )
    async def monitor_incidents(
        monitor_id: uuid.UUID,
        principal: Viewer,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Cursor = None,
    ) -> IncidentPage:
        after = decode_cursor(cursor) if cursor else None
        now = clock()
        async with sessions() as session:
            await owned(session, principal, monitor_id)
            rows = await queries.incidents_page(session, monitor_id, limit=limit + 1, after=after)
        more = len(rows) > limit
        rows = rows[:limit]
        items = [
            Incident(
                incident_id=row.incident_id,
                monitor_id=row.monitor_id,
                started_at=row.started_at,
                resolved_at=row.resolved_at,
                ongoing=row.resolved_at is None,
                duration_seconds=((row.resolved_at or now) - row.started_at).total_seconds(),
                cause=row.cause,
                first_error=row.first_error,
                region=row.region,
            )
            for row in rows
        ]
        last = rows[-1] if rows else None
        next_cursor = encode_cursor(last.started_at, last.incident_id) if more and last else None
        return IncidentPage(items=items, next_cursor=next_cursor)

    @router.get(
        "/monitors/{monitor_id}/timeseries",
        response_model=Timeseries,
        summary="Latency percentiles and check counts per step, from the rollups",
    )
    async def monitor_timeseries(
        monitor_id: uuid.UUID,
        principal: Viewer,
        start: From = None,
        end: To = None,
        step: Annotated[str, Query(description="Bucket length: 1m, 5m, 1h, 1d...")] = "1h",
        region: Annotated[str | None, Query(max_length=100, description="One region only")] = None,
    ) -> Response:
        now = clock()
        try:
            length = windows.parse_step(step)
            lo, hi = windows.resolve(now, start=start, end=end)
        except windows.WindowError as error:
            raise invalid(error) from None
        # In `timezone.utc`, whatever offset the query gave: the step starts are dict keys
        # and serialised 8,760 times, and a parsed offset's tzinfo is a Python-level class.
        lo, hi = lo.astimezone(UTC), hi.astimezone(UTC)
        first = floor_to(lo, length)
        count = -(-(hi - first) // length)
        if count > MAX_POINTS:
            raise invalid(windows.WindowError("step", f"more than {MAX_POINTS} points; widen it"))
        async with sessions() as session:
            await owned(session, principal, monitor_id)
            found = await queries.step_cells(session, monitor_id, lo, hi, length, region)
        # Serialised once by pydantic-core from typed values (domain/series.py), without
        # validating 8,760 points again (validation cost as much as the query); the points
        # of finished cells come as the JSON stored with them (on PostgreSQL, rendered there).
        head = to_json(
            {
                "monitor_id": monitor_id,
                "start": lo,
                "end": hi,
                "step_seconds": int(length.total_seconds()),
                "resolution": resolution_for_step(length).value,
                "relative_error": ALPHA,
            }
        )
        # the step starts added up in C (`operator.add` of a datetime and a timedelta)
        starts: list[datetime] = list(accumulate(repeat(length, count - 1), add, initial=first))
        series = points_json(starts, found.cells, found.finished, found.rendered)
        body = b"".join((head[:-1], b',"points":', series, b"}"))  # one copy of the points
        return Response(body, media_type="application/json")

    return router


def as_json(body: BaseModel) -> Response:
    """The body serialised once. Returned as a model, FastAPI would dump it to a dict and
    validate that again against the response model: for a 2,000-point series, more than the
    query costs. The route keeps `response_model` for its OpenAPI schema."""
    return Response(body.model_dump_json(), media_type="application/json")
