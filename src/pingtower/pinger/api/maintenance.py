"""/api/v1/maintenance-windows: one-off, weekly and cron windows during which failures of the
covered monitors (all of the workspace's, or those listed) open no incident."""

from __future__ import annotations

import uuid
from datetime import datetime, time, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, insert, select

from pingtower.common.events import utcnow
from pingtower.common.http.problems import Problem, not_found
from pingtower.common.security import Principal, require
from pingtower.pinger.domain.maintenance import Cron, OneOff, Weekly
from pingtower.pinger.domain.monitor import InvalidSettingError
from pingtower.pinger.store import monitors as monitor_store
from pingtower.pinger.store.database import PingerDatabase
from pingtower.pinger.store.maintenance import window_from_row
from pingtower.pinger.store.tables import maintenance_windows


class MaintenanceWindowCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    monitor_ids: list[uuid.UUID] = Field(
        [], max_length=1000, description="Monitors covered; empty: every monitor."
    )
    kind: Literal["once", "weekly", "cron"]
    starts_at: datetime | None = Field(None, description="once: when the window opens.")
    ends_at: datetime | None = Field(None, description="once: when the window closes.")
    days: list[int] | None = Field(None, description="weekly: 0 (Monday) to 6 (Sunday).")
    start_time: time | None = Field(None, description="weekly: local start time, HH:MM.")
    cron: str | None = Field(
        None, max_length=200, description="cron: when each window opens, e.g. '0 3 * * 1-5'."
    )
    duration_minutes: int | None = Field(
        None, ge=1, le=7 * 24 * 60, description="weekly, cron: how long each window lasts."
    )
    timezone: str = Field("UTC", max_length=64, description="weekly, cron: IANA time zone.")


class MaintenanceWindowPublic(BaseModel):
    id: uuid.UUID
    name: str
    monitor_ids: list[uuid.UUID]
    kind: Literal["once", "weekly", "cron"]
    starts_at: datetime | None
    ends_at: datetime | None
    days: list[int] | None
    start_time: str | None
    cron: str | None
    duration_minutes: int | None
    timezone: str
    active_now: bool
    created_at: datetime


class MaintenanceWindowPage(BaseModel):
    items: list[MaintenanceWindowPublic]
    next_cursor: str | None


def _required(value: Any, field: str) -> Any:
    if value is None:
        raise InvalidSettingError(field, "is required for this kind of window")
    return value


def _validate(body: MaintenanceWindowCreate) -> dict[str, Any]:
    if body.kind == "once":
        starts_at = _required(body.starts_at, "starts_at")
        ends_at = _required(body.ends_at, "ends_at")
        OneOff(starts_at, ends_at)
        return {"starts_at": starts_at, "ends_at": ends_at}
    if body.kind == "cron":
        expression = _required(body.cron, "cron").strip()
        minutes = _required(body.duration_minutes, "duration_minutes")
        Cron(expression, timedelta(minutes=minutes), body.timezone)
        return {"cron": expression, "duration_minutes": minutes}
    days = _required(body.days, "days")
    start = _required(body.start_time, "start_time")
    minutes = _required(body.duration_minutes, "duration_minutes")
    Weekly(frozenset(days), start, timedelta(minutes=minutes), body.timezone)
    return {
        "days": sorted(set(days)),
        "start_time": start.strftime("%H:%M"),
        "duration_minutes": minutes,
    }


def _public(row: Any) -> MaintenanceWindowPublic:
    data = dict(row._mapping)
    data["active_now"] = window_from_row(row).is_active(utcnow())
    return MaintenanceWindowPublic.model_validate(data)


def maintenance_router(db: PingerDatabase) -> APIRouter:
    router = APIRouter(prefix="/maintenance-windows", tags=["maintenance windows"])

    @router.post("", status_code=201, response_model=MaintenanceWindowPublic)
    async def create_window(
        body: MaintenanceWindowCreate, principal: Principal = Depends(require("editor"))
    ) -> MaintenanceWindowPublic:
        try:
            schedule = _validate(body)
        except InvalidSettingError as error:
            raise Problem(
                422,
                "Validation failed",
                f"{error.field}: {error.message}",
                errors=[{"field": error.field, "message": error.message}],
            ) from None
        window_id = uuid.uuid4()
        async with db.sessions() as session, session.begin():
            for index, monitor_id in enumerate(body.monitor_ids):
                if not await monitor_store.monitor_exists(session, principal.tenant, monitor_id):
                    field = f"monitor_ids.{index}"
                    raise Problem(
                        422,
                        "Validation failed",
                        f"{field}: no such monitor in this workspace",
                        errors=[{"field": field, "message": "no such monitor in this workspace"}],
                    )
            await session.execute(
                insert(maintenance_windows).values(
                    id=window_id,
                    tenant=principal.tenant,
                    name=body.name,
                    monitor_ids=[str(m) for m in dict.fromkeys(body.monitor_ids)],
                    kind=body.kind,
                    timezone=body.timezone,
                    created_at=utcnow(),
                    **schedule,
                )
            )
            row = (
                await session.execute(
                    select(maintenance_windows).where(maintenance_windows.c.id == window_id)
                )
            ).one()
        return _public(row)

    @router.get("", response_model=MaintenanceWindowPage)
    async def list_windows(
        principal: Principal = Depends(require("viewer")),
        cursor: str | None = None,
        limit: int = Query(100, ge=1, le=500),
    ) -> MaintenanceWindowPage:
        query = select(maintenance_windows).where(maintenance_windows.c.tenant == principal.tenant)
        if cursor is not None:
            (after,) = monitor_store.decode_cursor(cursor, 1)
            try:
                query = query.where(maintenance_windows.c.id > uuid.UUID(after))
            except ValueError:
                raise Problem(400, "Bad Request", "the cursor is not valid") from None
        query = query.order_by(maintenance_windows.c.id).limit(limit + 1)
        async with db.sessions() as session:
            rows = (await session.execute(query)).all()
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = monitor_store.encode_cursor(rows[-1].id)
        return MaintenanceWindowPage(items=[_public(r) for r in rows], next_cursor=next_cursor)

    @router.get("/{window_id}", response_model=MaintenanceWindowPublic)
    async def get_window(
        window_id: uuid.UUID, principal: Principal = Depends(require("viewer"))
    ) -> MaintenanceWindowPublic:
        async with db.sessions() as session:
            row = (
                await session.execute(
                    select(maintenance_windows).where(
                        maintenance_windows.c.id == window_id,
                        maintenance_windows.c.tenant == principal.tenant,
                    )
                )
            ).first()
        if row is None:
            raise not_found("maintenance window")
        return _public(row)

    @router.delete("/{window_id}", status_code=204)
    async def delete_window(
        window_id: uuid.UUID, principal: Principal = Depends(require("editor"))
    ) -> Response:
        async with db.sessions() as session, session.begin():
            result = await session.execute(
                delete(maintenance_windows).where(
                    maintenance_windows.c.id == window_id,
                    maintenance_windows.c.tenant == principal.tenant,
                )
            )
        if not result.rowcount:  # type: ignore[attr-defined]
            raise not_found("maintenance window")
        return Response(status_code=204)

    return router
