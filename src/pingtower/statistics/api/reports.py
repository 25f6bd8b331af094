"""Reports: the SLA report (JSON and CSV), trends against the previous period, and public SVG
badges at stable URLs for monitors marked public."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pingtower.common.events import Status
from pingtower.common.http.problems import not_found
from pingtower.statistics.api.params import From, To, Viewer, invalid
from pingtower.statistics.api.schemas import SlaReport, SlaRow, TrendFigure, Trends
from pingtower.statistics.domain import badges, windows
from pingtower.statistics.domain.incidents import IncidentSpan, mttr
from pingtower.statistics.domain.rollups import Cell, merge_all
from pingtower.statistics.domain.trends import Trend, steadily_growing
from pingtower.statistics.domain.uptime import UptimeFigures, success_ratio
from pingtower.statistics.store import queries
from pingtower.statistics.store.figures import WindowFigures, window_figures
from pingtower.statistics.store.tables import monitors

TREND_DAYS = 7
BADGE_CACHE = "public, max-age=60"
SVG = "image/svg+xml"
WindowParam = Annotated[str | None, Query(description="24h, 7d, 30d, 90d or 365d")]
MonthParam = Annotated[str | None, Query(description="A calendar month, e.g. 2026-10")]


def seconds(delta: timedelta | None) -> float | None:
    return None if delta is None else delta.total_seconds()


def figure(trend: Trend) -> TrendFigure:
    return TrendFigure(
        current=trend.current,
        previous=trend.previous,
        change=trend.change,
        relative_change=trend.relative_change,
    )


def sla_row(kind: str, key: str, name: str, parts: Sequence[WindowFigures]) -> SlaRow:
    """One row from one monitor's figures, or a tag's: time, checks and incidents summed."""
    time = sum((p.uptime for p in parts), UptimeFigures(timedelta(0), timedelta(0), timedelta(0)))
    cell: Cell = merge_all(p.cell for p in parts)
    spans: list[IncidentSpan] = [span for p in parts for span in p.incidents]
    return SlaRow(
        kind=kind,
        key=key,
        name=name,
        monitors=len(parts),
        uptime=time.ratio,
        up_seconds=time.up.total_seconds(),
        downtime_seconds=time.down.total_seconds(),
        excluded_seconds=time.excluded.total_seconds(),
        checks=cell.checks,
        check_success_ratio=success_ratio(cell.successful, cell.checks),
        incident_count=len(spans),
        mttr_seconds=seconds(mttr(spans)),
        p95_ms=cell.histogram.quantile(0.95),
    )


def as_csv(report: SlaReport) -> str:
    out = io.StringIO()
    fields = list(SlaRow.model_fields)
    writer = csv.DictWriter(out, fieldnames=["start", "end", *fields], lineterminator="\n")
    writer.writeheader()
    for row in report.rows:
        values = row.model_dump()
        # a leading =, +, - or @ would make a spreadsheet run the name as a formula
        if str(values["name"]).startswith(("=", "+", "-", "@")):
            values["name"] = "'" + values["name"]
        writer.writerow(
            {"start": report.start.isoformat(), "end": report.end.isoformat(), **values}
        )
    return out.getvalue()


async def p95(
    session: AsyncSession, monitor_id: uuid.UUID, start: datetime, end: datetime
) -> float | None:
    cells = await queries.range_cells(session, [monitor_id], start, end)
    return cells.get(monitor_id, Cell()).histogram.quantile(0.95)


def build_report_router(
    sessions: async_sessionmaker[AsyncSession], clock: Callable[[], datetime]
) -> APIRouter:
    router = APIRouter(prefix="/stats", tags=["reports"])

    def window_of(
        window: str | None,
        month: str | None,
        start: datetime | None,
        end: datetime | None,
        default: str,
    ) -> tuple[datetime, datetime]:
        try:
            return windows.resolve(
                clock(), window=window, month=month, start=start, end=end, default=default
            )
        except windows.WindowError as error:
            raise invalid(error) from None

    @router.get(
        "/reports/sla",
        response_model=SlaReport,
        summary="SLA report per monitor and per tag for a period (JSON, or CSV with format=csv)",
        responses={200: {"content": {"text/csv": {}}}},
    )
    async def sla(
        principal: Viewer,
        window: WindowParam = None,
        month: MonthParam = None,
        start: From = None,
        end: To = None,
        tag: Annotated[str | None, Query(max_length=100, description="Only this tag")] = None,
        format: Literal["json", "csv"] = "json",
    ) -> SlaReport | Response:
        lo, hi = window_of(window, month, start, end, "30d")
        async with sessions() as session:
            rows = await queries.workspace_monitors(session, principal.tenant)
            if tag is not None:
                rows = [row for row in rows if tag in (row.tags or [])]
            figures = await window_figures(session, [row.monitor_id for row in rows], lo, hi)
        report_rows = [
            sla_row("monitor", str(row.monitor_id), row.name, [figures[row.monitor_id]])
            for row in rows
        ]
        tags = sorted({t for row in rows for t in (row.tags or []) if tag is None or t == tag})
        for name in tags:
            members = [figures[row.monitor_id] for row in rows if name in (row.tags or [])]
            report_rows.append(sla_row("tag", name, name, members))
        report = SlaReport(start=lo, end=hi, rows=report_rows)
        if format == "csv":
            filename = f"sla-{lo:%Y%m%d}-{hi:%Y%m%d}.csv"
            return Response(
                as_csv(report),
                media_type="text/csv; charset=utf-8",
                headers={"content-disposition": f'attachment; filename="{filename}"'},
            )
        return report

    @router.get(
        "/monitors/{monitor_id}/trends",
        response_model=Trends,
        summary="Each figure beside the previous period of the same length",
    )
    async def trends(
        monitor_id: uuid.UUID,
        principal: Viewer,
        window: WindowParam = None,
        month: MonthParam = None,
        start: From = None,
        end: To = None,
    ) -> Trends:
        lo, hi = window_of(window, month, start, end, "7d")
        length = hi - lo
        now = clock()
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        # the last whole days, oldest first (today is not over yet)
        days = [today - (TREND_DAYS - i) * timedelta(days=1) for i in range(TREND_DAYS)]
        async with sessions() as session:
            if await queries.monitor(session, principal.tenant, monitor_id) is None:
                raise not_found("monitor")
            current = (await window_figures(session, [monitor_id], lo, hi))[monitor_id]
            previous = (await window_figures(session, [monitor_id], lo - length, lo))[monitor_id]
            daily = [await p95(session, monitor_id, day, day + timedelta(days=1)) for day in days]
        return Trends(
            monitor_id=monitor_id,
            start=lo,
            end=hi,
            previous_start=lo - length,
            uptime=figure(Trend(current.uptime.ratio, previous.uptime.ratio)),
            incident_count=figure(
                Trend(float(len(current.incidents)), float(len(previous.incidents)))
            ),
            mttr_seconds=figure(Trend(seconds(current.mttr), seconds(previous.mttr))),
            p95_ms=figure(Trend(current.p95, previous.p95)),
            daily_p95_ms=daily,
            latency_growing=steadily_growing(daily),
        )

    # --- public badges: no credentials; a monitor that is not public answers 404 ------------

    async def public_monitor(session: AsyncSession, monitor_id: uuid.UUID) -> str:
        row = (
            await session.execute(
                select(monitors.c.tenant).where(
                    monitors.c.monitor_id == monitor_id,
                    monitors.c.public.is_(True),
                    monitors.c.deleted_at.is_(None),
                )
            )
        ).first()
        if row is None:
            raise not_found("monitor")
        return str(row.tenant)

    def svg(body: str) -> Response:
        return Response(body, media_type=SVG, headers={"cache-control": BADGE_CACHE})

    @router.get("/badges/{monitor_id}/status.svg", summary="Status badge", tags=["badges"])
    async def status_badge(monitor_id: uuid.UUID) -> Response:
        async with sessions() as session:
            await public_monitor(session, monitor_id)
            current = await queries.current_statuses(session, [monitor_id])
        status = current.get(monitor_id, (Status.UNKNOWN, None))[0]
        return svg(badges.render("status", status.value, badges.STATUS_COLORS[status]))

    @router.get("/badges/{monitor_id}/uptime.svg", summary="Uptime badge", tags=["badges"])
    async def uptime_badge(
        monitor_id: uuid.UUID,
        window: Literal["24h", "7d", "30d", "90d", "365d"] = "30d",
    ) -> Response:
        lo, hi = window_of(window, None, None, None, "30d")
        async with sessions() as session:
            await public_monitor(session, monitor_id)
            figures = (await window_figures(session, [monitor_id], lo, hi))[monitor_id]
        ratio = figures.uptime.ratio
        return svg(
            badges.render(
                f"uptime {window}", badges.format_uptime(ratio), badges.uptime_color(ratio)
            )
        )

    @router.get(
        "/badges/{monitor_id}/response-time.svg", summary="p95 response time badge", tags=["badges"]
    )
    async def latency_badge(
        monitor_id: uuid.UUID,
        window: Literal["24h", "7d", "30d", "90d", "365d"] = "24h",
    ) -> Response:
        lo, hi = window_of(window, None, None, None, "24h")
        async with sessions() as session:
            await public_monitor(session, monitor_id)
            value = await p95(session, monitor_id, lo, hi)
        return svg(
            badges.render(
                f"p95 {window}", badges.format_latency(value), badges.latency_color(value)
            )
        )

    return router
