"""SLOs that monitors carry in their settings (`slo` of the monitors API and of monitors as
code): kept in the `slos` table beside the ones made through /api/v1/stats/slos, in step with the
monitor's `monitor.*` events, and evaluated like them.

Apart from store/slos.py because the ingest writes them, and store/slos.py reads through
store/queries.py, which imports the ingest.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete
from sqlalchemy.ext.asyncio import AsyncSession

from pingtower.common.events import SloSetting
from pingtower.statistics.store.dialect import upsert
from pingtower.statistics.store.tables import slos

# Namespace of the SLOs that monitors carry in their settings: such an SLO's id is derived from
# its monitor's, so every event about the monitor finds the same row without a lookup column.
MONITOR_SLO_NAMESPACE = uuid.UUID("6d0b2f53-5c1e-4f7e-9a43-0c6f3a1e5b27")


def monitor_slo_id(monitor_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(MONITOR_SLO_NAMESPACE, str(monitor_id))


def managed_by_monitor(slo: Row[Any]) -> bool:
    """True for an SLO that its monitor's settings own (created through the monitors API or
    monitors as code), which only a change of the monitor may change or remove."""
    return slo.monitor_id is not None and slo.slo_id == monitor_slo_id(slo.monitor_id)


async def sync_monitor_slo(
    session: AsyncSession,
    *,
    tenant: str,
    monitor_id: uuid.UUID,
    name: str,
    setting: SloSetting | None,
    at: datetime,
) -> None:
    """Make the monitor-managed SLO match the monitor's definition as of `at`: upserted while
    the monitor carries an objective, removed once it does not (or is deleted). The caller has
    established that this definition is the newest one applied, so replays and late events
    never get here."""
    slo_id = monitor_slo_id(monitor_id)
    if setting is None:
        await session.execute(delete(slos).where(slos.c.slo_id == slo_id, slos.c.tenant == tenant))
        return
    values = {"name": name, "objective": setting.objective, "window_days": setting.window_days}
    await session.execute(
        upsert(session, slos)
        .values(slo_id=slo_id, tenant=tenant, monitor_id=monitor_id, created_at=at, **values)
        .on_conflict_do_update(
            index_elements=["slo_id"], set_=values, where=slos.c.tenant == tenant
        )
    )
