"""The figures of a set of monitors over one window, read in four queries whatever the count."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from pingtower.statistics.domain.incidents import IncidentSpan, mtbf, mttr
from pingtower.statistics.domain.rollups import Cell
from pingtower.statistics.domain.uptime import UptimeFigures, success_ratio, uptime
from pingtower.statistics.store import queries


@dataclass(frozen=True)
class WindowFigures:
    start: datetime
    end: datetime
    uptime: UptimeFigures
    cell: Cell
    incidents: list[IncidentSpan]

    @property
    def success_ratio(self) -> float | None:
        return success_ratio(self.cell.successful, self.cell.checks)

    @property
    def mttr(self) -> timedelta | None:
        return mttr(self.incidents)

    @property
    def mtbf(self) -> timedelta | None:
        return mtbf(self.incidents)

    @property
    def p95(self) -> float | None:
        return self.cell.histogram.quantile(0.95)


async def window_figures(
    session: AsyncSession, monitor_ids: Collection[uuid.UUID], start: datetime, end: datetime
) -> dict[uuid.UUID, WindowFigures]:
    timelines = await queries.timelines(session, monitor_ids, start, end)
    cells = await queries.range_cells(session, monitor_ids, start, end)
    spans = await queries.incident_spans(session, monitor_ids, start, end)
    return {
        m: WindowFigures(
            start,
            end,
            uptime(timelines.get(m, []), start, end),
            cells.get(m) or Cell(),
            spans.get(m, []),
        )
        for m in monitor_ids
    }
