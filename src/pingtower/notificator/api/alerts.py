"""/alerts (open by default) and acknowledging one, which stops its reminders."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlalchemy import select, update

from pingtower.common.events import utcnow
from pingtower.common.http.problems import Problem, not_found
from pingtower.common.security import Principal, require
from pingtower.notificator.api.deps import ApiDeps
from pingtower.notificator.api.pagination import after_cursor, encode_cursor
from pingtower.notificator.consumer import cancel_pending
from pingtower.notificator.domain.decisions import UNTIL_ACKNOWLEDGED
from pingtower.notificator.store.tables import alerts, monitors


class AlertPublic(BaseModel):
    id: uuid.UUID
    rule_id: uuid.UUID
    monitor_id: uuid.UUID
    monitor_name: str | None
    problem: str
    severity: str
    status: str
    opened_at: datetime
    resolved_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    error: str | None
    # The Pinger's incident behind a down alert, when it has one.
    incident_id: uuid.UUID | None = None


class AlertPage(BaseModel):
    items: list[AlertPublic]
    next_cursor: str | None


def _query() -> Any:
    return select(alerts, monitors.c.name.label("monitor_name")).outerjoin(
        monitors, monitors.c.monitor_id == alerts.c.monitor_id
    )


def _public(row: Any) -> AlertPublic:
    return AlertPublic.model_validate(dict(row._mapping))


def alerts_router(deps: ApiDeps) -> APIRouter:
    router = APIRouter(prefix="/alerts", tags=["alerts"])

    async def load(session: Any, tenant: str, alert_id: uuid.UUID) -> Any:
        row = (
            await session.execute(
                _query().where(alerts.c.id == alert_id, alerts.c.tenant == tenant)
            )
        ).first()
        if row is None:
            raise not_found("alert")
        return row

    @router.get("", response_model=AlertPage)
    async def list_alerts(
        status: Literal["open", "resolved", "all"] = "open",
        limit: int = Query(50, ge=1, le=500),
        cursor: str | None = None,
        principal: Principal = Depends(require("viewer")),
    ) -> AlertPage:
        query = _query().where(
            alerts.c.tenant == principal.tenant,
            after_cursor(alerts.c.opened_at, alerts.c.id, cursor, descending=True),
        )
        if status != "all":
            query = query.where(alerts.c.status == status)
        async with deps.sessions() as session:
            rows = (
                await session.execute(
                    query.order_by(alerts.c.opened_at.desc(), alerts.c.id.desc()).limit(limit + 1)
                )
            ).all()
        page = rows[:limit]
        next_cursor = encode_cursor(page[-1].opened_at, page[-1].id) if len(rows) > limit else None
        return AlertPage(items=[_public(r) for r in page], next_cursor=next_cursor)

    @router.get("/{alert_id}", response_model=AlertPublic)
    async def get_alert(
        alert_id: uuid.UUID, principal: Principal = Depends(require("viewer"))
    ) -> AlertPublic:
        async with deps.sessions() as session:
            return _public(await load(session, principal.tenant, alert_id))

    @router.post("/{alert_id}/acknowledge", response_model=AlertPublic)
    async def acknowledge_alert(
        alert_id: uuid.UUID, principal: Principal = Depends(require("editor"))
    ) -> AlertPublic:
        async with deps.sessions() as session, session.begin():
            row = await load(session, principal.tenant, alert_id)
            if row.status != "open":
                raise Problem(409, "Conflict", "only an open alert can be acknowledged")
            if row.acknowledged_at is None:
                await session.execute(
                    update(alerts)
                    .where(alerts.c.id == alert_id, alerts.c.acknowledged_at.is_(None))
                    .values(acknowledged_at=utcnow(), acknowledged_by=principal.subject)
                )
                await cancel_pending(
                    session, [alert_id], [k.value for k in UNTIL_ACKNOWLEDGED], "acknowledged"
                )
            return _public(await load(session, principal.tenant, alert_id))

    return router
