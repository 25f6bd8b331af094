"""/silences: hold back the messages of matching monitors until a given time."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import delete, select, update

from pingtower.common.events import utcnow
from pingtower.common.http.problems import Problem, not_found
from pingtower.common.security import Principal, require
from pingtower.notificator.api.deps import ApiDeps
from pingtower.notificator.api.pagination import after_cursor, encode_cursor
from pingtower.notificator.api.references import check_monitors
from pingtower.notificator.store.tables import silences

MAX_LENGTH = timedelta(days=366)


class SilenceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    monitor_ids: list[uuid.UUID] = Field(default_factory=list, max_length=1000)
    tags: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="Monitors by id or tag; neither silences the whole workspace.",
    )
    starts_at: AwareDatetime | None = Field(None, description="Default: now.")
    ends_at: AwareDatetime
    comment: str = Field("", max_length=1000)

    @model_validator(mode="after")
    def _ordered(self) -> SilenceCreate:
        starts = self.starts_at or utcnow()
        if self.ends_at <= starts:
            raise ValueError("ends_at must be after starts_at")
        if self.ends_at - starts > MAX_LENGTH:
            raise ValueError("a silence lasts at most a year")
        return self


class SilenceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ends_at: AwareDatetime | None = Field(None, description="Move the end (now: expire it).")
    comment: str | None = Field(None, max_length=1000)


class SilencePublic(BaseModel):
    id: uuid.UUID
    monitor_ids: list[uuid.UUID]
    tags: list[str]
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_by: str
    created_at: datetime


class SilencePage(BaseModel):
    items: list[SilencePublic]
    next_cursor: str | None


def _public(row: Any) -> SilencePublic:
    return SilencePublic.model_validate(dict(row._mapping))


def silences_router(deps: ApiDeps) -> APIRouter:
    router = APIRouter(prefix="/silences", tags=["silences"])

    async def load(session: Any, tenant: str, silence_id: uuid.UUID) -> Any:
        row = (
            await session.execute(
                select(silences).where(silences.c.id == silence_id, silences.c.tenant == tenant)
            )
        ).first()
        if row is None:
            raise not_found("silence")
        return row

    @router.post("", status_code=201, response_model=SilencePublic)
    async def create_silence(
        body: SilenceCreate, principal: Principal = Depends(require("editor"))
    ) -> SilencePublic:
        now = utcnow()
        silence_id = uuid.uuid4()
        async with deps.sessions() as session, session.begin():
            await check_monitors(session, principal.tenant, body.monitor_ids)
            await session.execute(
                silences.insert().values(
                    id=silence_id,
                    tenant=principal.tenant,
                    monitor_ids=sorted({str(m) for m in body.monitor_ids}),
                    tags=sorted(set(body.tags)),
                    starts_at=body.starts_at or now,
                    ends_at=body.ends_at,
                    comment=body.comment,
                    created_by=principal.subject,
                    created_at=now,
                )
            )
            return _public(await load(session, principal.tenant, silence_id))

    @router.get("", response_model=SilencePage)
    async def list_silences(
        state: Literal["active", "all"] = "active",
        limit: int = Query(50, ge=1, le=500),
        cursor: str | None = None,
        principal: Principal = Depends(require("viewer")),
    ) -> SilencePage:
        query = select(silences).where(
            silences.c.tenant == principal.tenant,
            after_cursor(silences.c.created_at, silences.c.id, cursor, descending=True),
        )
        if state == "active":
            now = utcnow()
            query = query.where(silences.c.starts_at <= now, silences.c.ends_at > now)
        async with deps.sessions() as session:
            rows = (
                await session.execute(
                    query.order_by(silences.c.created_at.desc(), silences.c.id.desc()).limit(
                        limit + 1
                    )
                )
            ).all()
        page = rows[:limit]
        next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
        return SilencePage(items=[_public(r) for r in page], next_cursor=next_cursor)

    @router.get("/{silence_id}", response_model=SilencePublic)
    async def get_silence(
        silence_id: uuid.UUID, principal: Principal = Depends(require("viewer"))
    ) -> SilencePublic:
        async with deps.sessions() as session:
            return _public(await load(session, principal.tenant, silence_id))

    @router.patch("/{silence_id}", response_model=SilencePublic)
    async def update_silence(
        silence_id: uuid.UUID,
        body: SilenceUpdate,
        principal: Principal = Depends(require("editor")),
    ) -> SilencePublic:
        async with deps.sessions() as session, session.begin():
            row = await load(session, principal.tenant, silence_id)
            values: dict[str, Any] = body.model_dump(exclude_unset=True, exclude_none=True)
            if "ends_at" in values and values["ends_at"] <= row.starts_at:
                raise Problem(
                    422,
                    "Validation failed",
                    "ends_at: must be after starts_at",
                    errors=[{"field": "ends_at", "message": "must be after starts_at"}],
                )
            if values:
                await session.execute(
                    update(silences).where(silences.c.id == silence_id).values(**values)
                )
            return _public(await load(session, principal.tenant, silence_id))

    @router.delete("/{silence_id}", status_code=204)
    async def delete_silence(
        silence_id: uuid.UUID, principal: Principal = Depends(require("editor"))
    ) -> Response:
        async with deps.sessions() as session, session.begin():
            await load(session, principal.tenant, silence_id)
            await session.execute(delete(silences).where(silences.c.id == silence_id))
        return Response(status_code=204)

    return router
