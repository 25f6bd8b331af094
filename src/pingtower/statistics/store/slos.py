"""SLO storage, figures and the burn-rate evaluation that emits slo.burn_rate_exceeded."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from prometheus_client import Counter
from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pingtower.common.events import SloBurnRateExceeded
from pingtower.common.messaging.outbox import Outbox
from pingtower.statistics.domain.slo import RULES, Budget, burn_alerts, burn_rate, error_budget
from pingtower.statistics.domain.uptime import UptimeFigures, uptime
from pingtower.statistics.store import queries
from pingtower.statistics.store.tables import monitors, slos

log = structlog.get_logger(__name__)

ALERTS = Counter("pingtower_statistics_slo_alerts_total", "slo.burn_rate_exceeded events emitted")
BURN_WINDOWS = sorted({w for rule in RULES for w in (rule.long, rule.short)})


async def members(session: AsyncSession, slo: Row[Any]) -> list[uuid.UUID]:
    """The monitors an SLO covers: its monitor, or every live monitor carrying its tag."""
    if slo.monitor_id is not None:
        return [slo.monitor_id]
    rows = await session.execute(
        select(monitors.c.monitor_id, monitors.c.tags).where(
            monitors.c.tenant == slo.tenant, monitors.c.deleted_at.is_(None)
        )
    )
    return [row.monitor_id for row in rows if slo.tag in (row.tags or [])]


class Figures:
    """Uptime figures of a set of monitors for windows ending at `now`, from one read."""

    def __init__(self, timelines: dict[uuid.UUID, Any], now: datetime) -> None:
        self.timelines = timelines
        self.now = now

    @classmethod
    async def load(
        cls,
        session: AsyncSession,
        monitor_ids: Sequence[uuid.UUID],
        now: datetime,
        longest: timedelta,
    ) -> Figures:
        return cls(await queries.timelines(session, monitor_ids, now - longest, now), now)

    def over(self, length: timedelta) -> UptimeFigures:
        total = UptimeFigures(timedelta(0), timedelta(0), timedelta(0))
        for intervals in self.timelines.values():
            total += uptime(intervals, self.now - length, self.now)
        return total


@dataclass(frozen=True)
class SloReport:
    budget: Budget
    burn_rates: dict[str, float]
    alerting_since: datetime | None


async def report(session: AsyncSession, slo: Row[Any], now: datetime) -> SloReport:
    period = timedelta(days=slo.window_days)
    figures = await Figures.load(
        session, await members(session, slo), now, max(period, BURN_WINDOWS[-1])
    )
    return SloReport(
        error_budget(figures.over(period), slo.objective),
        {_label(w): burn_rate(figures.over(w), slo.objective) for w in BURN_WINDOWS},
        slo.alerting_since,
    )


def _label(window: timedelta) -> str:
    minutes = int(window.total_seconds() // 60)
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


async def slo_ids(session: AsyncSession) -> list[uuid.UUID]:
    return list((await session.execute(select(slos.c.slo_id).order_by(slos.c.slo_id))).scalars())


async def evaluate(session: AsyncSession, outbox: Outbox, slo_id: uuid.UUID, now: datetime) -> bool:
    """Check one SLO's burn-rate rules; emit one event when it starts burning too fast and
    re-arm it once no rule fires. The conditional update makes two evaluators racing on one SLO
    emit once. True when an event was emitted."""
    slo = (await session.execute(select(slos).where(slos.c.slo_id == slo_id))).first()
    if slo is None:
        return False
    figures = await Figures.load(session, await members(session, slo), now, BURN_WINDOWS[-1])
    alerts = burn_alerts(figures.over, slo.objective)
    if not alerts:
        if slo.alerting_since is not None:
            await session.execute(
                update(slos).where(slos.c.slo_id == slo.slo_id).values(alerting_since=None)
            )
        return False
    claimed = await session.execute(
        update(slos)
        .where(slos.c.slo_id == slo.slo_id, slos.c.alerting_since.is_(None))
        .values(alerting_since=now)
    )
    if not claimed.rowcount:  # type: ignore[attr-defined]
        return False
    worst = max(alerts, key=lambda alert: alert.burn_long / alert.rule.threshold)
    await outbox.add(
        session,
        SloBurnRateExceeded(
            slo_id=slo.slo_id,
            monitor_id=slo.monitor_id,
            tag=slo.tag,
            objective=slo.objective,
            long_window_seconds=int(worst.rule.long.total_seconds()),
            short_window_seconds=int(worst.rule.short.total_seconds()),
            burn_rate_long=worst.burn_long,
            burn_rate_short=worst.burn_short,
            threshold=worst.rule.threshold,
        ),
        tenant=slo.tenant,
        occurred_at=now,
    )
    ALERTS.inc()
    log.info("slo burning too fast", slo_id=str(slo.slo_id), burn_rate=worst.burn_long)
    return True
