"""/notifications: the delivery log, newest first, each message with its attempts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlalchemy import select

from pingtower.common.http.problems import not_found
from pingtower.common.security import Principal, require
from pingtower.notificator.api.deps import ApiDeps
from pingtower.notificator.api.pagination import after_cursor, encode_cursor
from pingtower.notificator.store.tables import deliveries, delivery_attempts


class AttemptPublic(BaseModel):
    attempt: int
    started_at: datetime
    duration_ms: int
    ok: bool
    status_code: int | None
    error: str | None


class NotificationPublic(BaseModel):
    id: uuid.UUID
    alert_id: uuid.UUID
    rule_id: uuid.UUID
    monitor_id: uuid.UUID
    channel_id: uuid.UUID
    kind: str
    sequence: int
    status: str
    attempts: int
    due_at: datetime
    created_at: datetime
    finished_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    attempt_log: list[AttemptPublic]


class NotificationPage(BaseModel):
    items: list[NotificationPublic]
    next_cursor: str | None


Status = Literal["pending", "sending", "delivered", "failed", "cancelled"]


def notifications_router(deps: ApiDeps) -> APIRouter:
    router = APIRouter(prefix="/notifications", tags=["notifications"])

    async def with_attempts(session: Any, rows: list[Any]) -> list[NotificationPublic]:
        ids = [row.id for row in rows]
        attempts: dict[uuid.UUID, list[AttemptPublic]] = {i: [] for i in ids}
        if ids:
            for a in (
                await session.execute(
                    select(delivery_attempts)
                    .where(delivery_attempts.c.delivery_id.in_(ids))
                    .order_by(delivery_attempts.c.id)
                )
            ).all():
                attempts[a.delivery_id].append(AttemptPublic.model_validate(dict(a._mapping)))
        return [
            NotificationPublic.model_validate({**row._mapping, "attempt_log": attempts[row.id]})
            for row in rows
        ]

    @router.get("", response_model=NotificationPage)
    async def list_notifications(
        limit: int = Query(50, ge=1, le=500),
        cursor: str | None = None,
        status: Status | None = None,
        channel_id: uuid.UUID | None = None,
        monitor_id: uuid.UUID | None = None,
        principal: Principal = Depends(require("viewer")),
    ) -> NotificationPage:
        query = select(deliveries).where(
            deliveries.c.tenant == principal.tenant,
            after_cursor(deliveries.c.created_at, deliveries.c.id, cursor, descending=True),
        )
        if status is not None:
            query = query.where(deliveries.c.status == status)
        if channel_id is not None:
            query = query.where(deliveries.c.channel_id == channel_id)
        if monitor_id is not None:
            query = query.where(deliveries.c.monitor_id == monitor_id)
        async with deps.sessions() as session:
            rows = (
                await session.execute(
                    query.order_by(deliveries.c.created_at.desc(), deliveries.c.id.desc()).limit(
                        limit + 1
                    )
                )
            ).all()
            page = list(rows[:limit])
            items = await with_attempts(session, page)
        next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
        return NotificationPage(items=items, next_cursor=next_cursor)

    @router.get("/{notification_id}", response_model=NotificationPublic)
    async def get_notification(
        notification_id: uuid.UUID, principal: Principal = Depends(require("viewer"))
    ) -> NotificationPublic:
        async with deps.sessions() as session:
            row = (
                await session.execute(
                    select(deliveries).where(
                        deliveries.c.id == notification_id,
                        deliveries.c.tenant == principal.tenant,
                    )
                )
            ).first()
            if row is None:
                raise not_found("notification")
            return (await with_attempts(session, [row]))[0]

    return router
