"""Maintenance windows in the database, and their conversion to the domain's windows."""

from __future__ import annotations

import uuid
from datetime import time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pingtower.pinger.domain.maintenance import Cron, OneOff, Weekly, Window
from pingtower.pinger.store.tables import maintenance_windows


def window_from_row(row: Any) -> Window:
    if row.kind == "once":
        return OneOff(row.starts_at, row.ends_at)
    if row.kind == "cron":
        return Cron(row.cron, timedelta(minutes=row.duration_minutes), row.timezone)
    return Weekly(
        frozenset(row.days or ()),
        time.fromisoformat(row.start_time),
        timedelta(minutes=row.duration_minutes),
        row.timezone,
    )


TenantWindows = list[tuple[frozenset[str], Window]]


async def tenant_windows(session: AsyncSession, tenant: str) -> TenantWindows:
    """Every window of the workspace with the monitors it covers (empty: all of them)."""
    rows = (
        await session.execute(
            select(maintenance_windows).where(maintenance_windows.c.tenant == tenant)
        )
    ).all()
    return [(frozenset(row.monitor_ids), window_from_row(row)) for row in rows]


def covering(windows: TenantWindows, monitor_id: uuid.UUID) -> list[Window]:
    key = str(monitor_id)
    return [window for monitors, window in windows if not monitors or key in monitors]
