"""The public status page's data (no login) and its title and logo (admins).

`GET /stats/public/{workspace}/status-page` answers, for the workspace's public monitors only,
each one's status, 90 daily uptime figures and its incidents of those 90 days, in four queries
whatever the number of monitors. A workspace that publishes nothing (no public monitor, no
title, no logo) answers 404, exactly as an unknown one does, as the badges of a monitor that is
not public do: the public routes never tell whether a workspace exists.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pingtower.common.events import Status
from pingtower.common.http.problems import Problem, not_found
from pingtower.common.security import Principal, require
from pingtower.statistics.api.params import Viewer
from pingtower.statistics.domain.status_page import (
    DAYS,
    LOGO_TYPES,
    MAX_LOGO_BYTES,
    LogoRefused,
    check_logo,
    clean_title,
    daily_uptime,
    day_windows,
    group_of,
)
from pingtower.statistics.domain.uptime import uptime
from pingtower.statistics.store import queries
from pingtower.statistics.store.dialect import upsert
from pingtower.statistics.store.tables import incidents, monitors, status_pages

Admin = Annotated[Principal, Depends(require("admin"))]
WorkspaceName = Annotated[str, Path(max_length=100, description="The workspace's name")]
WORKSPACE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
PAGE_CACHE = "public, max-age=30"
LOGO_CACHE = "public, max-age=300"
# Shown by itself (opened from the page), an SVG logo must not run script or load anything:
# the sandbox gives it an opaque origin and no scripts, `default-src 'none'` blocks loads.
LOGO_POLICY = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
# A monitor flapping for months lists its newest incidents only.
MAX_INCIDENTS = 1000


class PublicDay(BaseModel):
    date: dt.date
    uptime: float | None = Field(description="Time-weighted, as the uptime endpoint; null: no data")
    downtime_seconds: float


class PublicIncident(BaseModel):
    started_at: datetime
    resolved_at: datetime | None
    ongoing: bool
    duration_seconds: float
    cause: str | None


class PublicMonitor(BaseModel):
    monitor_id: uuid.UUID
    name: str
    group: str = Field(description="Its first tag in alphabetical order, else `Services`")
    status: Status
    since: datetime | None
    uptime: float | None = Field(description=f"Over the {DAYS} days")
    days: list[PublicDay] = Field(description=f"The last {DAYS} UTC days, oldest first")
    incidents: list[PublicIncident] = Field(description="Newest first")


class PublicStatusPage(BaseModel):
    workspace: str
    title: str | None = Field(description="Set by an admin; null: the page names the workspace")
    logo_url: str | None
    generated_at: datetime
    monitors: list[PublicMonitor]


class StatusPageSettings(BaseModel):
    title: str | None
    logo_url: str | None
    logo_type: str | None
    updated_at: datetime | None
    updated_by: str | None


class StatusPageUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(
        None, max_length=100, description="The page's title; empty or null: the workspace name"
    )


def logo_url(workspace: str, digest: str | None) -> str | None:
    # The digest in the URL lets browsers cache the image and still see a new one at once.
    return None if digest is None else f"/api/v1/stats/public/{workspace}/logo?v={digest[:16]}"


async def public_monitors(session: AsyncSession, tenant: str) -> Sequence[Any]:
    m = monitors
    return (
        await session.execute(
            select(m.c.monitor_id, m.c.name, m.c.tags, m.c.paused)
            .where(m.c.tenant == tenant, m.c.public.is_(True), m.c.deleted_at.is_(None))
            .order_by(m.c.name, m.c.monitor_id)
        )
    ).all()


async def recent_incidents(
    session: AsyncSession, monitor_ids: Collection[uuid.UUID], start: datetime, end: datetime
) -> Sequence[Any]:
    """Incidents of these monitors that overlap [start, end), newest first, with their cause
    (`queries.incident_spans` has no cause)."""
    if not monitor_ids:
        return []
    i = incidents
    return (
        await session.execute(
            select(i.c.monitor_id, i.c.started_at, i.c.resolved_at, i.c.cause)
            .where(
                i.c.monitor_id.in_(list(monitor_ids)),
                i.c.started_at < end,
                or_(i.c.resolved_at.is_(None), i.c.resolved_at > start),
            )
            .order_by(i.c.started_at.desc())
            .limit(MAX_INCIDENTS)
        )
    ).all()


async def page_settings(session: AsyncSession, tenant: str) -> Any:
    s = status_pages
    return (
        await session.execute(
            select(s.c.title, s.c.logo_digest, s.c.logo_type, s.c.updated_at, s.c.updated_by).where(
                s.c.tenant == tenant
            )
        )
    ).first()


def build_status_page_router(
    sessions: async_sessionmaker[AsyncSession], clock: Callable[[], datetime]
) -> APIRouter:
    router = APIRouter(prefix="/stats", tags=["status page"])

    def known_name(workspace: str) -> str:
        if not WORKSPACE.match(workspace):
            raise not_found("status page")
        return workspace

    @router.get(
        "/public/{workspace}/status-page",
        response_model=PublicStatusPage,
        summary=f"Public status page data: public monitors, {DAYS} daily uptimes, incidents",
    )
    async def public_page(workspace: WorkspaceName) -> Response:
        tenant = known_name(workspace)
        now = clock()
        windows = day_windows(now)
        start = windows[0][0]
        async with sessions() as session:
            rows = await public_monitors(session, tenant)
            settings = await page_settings(session, tenant)
            if not rows and not (settings and (settings.title or settings.logo_digest)):
                raise not_found("status page")
            ids = [row.monitor_id for row in rows]
            current = await queries.current_statuses(session, ids)
            timelines = await queries.timelines(session, ids, start, now)
            found = await recent_incidents(session, ids, start, now)
        by_monitor: dict[uuid.UUID, list[dict[str, Any]]] = {m: [] for m in ids}
        for row in found:
            by_monitor[row.monitor_id].append(
                {
                    "started_at": row.started_at,
                    "resolved_at": row.resolved_at,
                    "ongoing": row.resolved_at is None,
                    "duration_seconds": ((row.resolved_at or now) - row.started_at).total_seconds(),
                    "cause": row.cause,
                }
            )
        dates = [day.date() for day, _ in windows]
        items = []
        for row in rows:
            timeline = timelines.get(row.monitor_id, [])
            status, since = current.get(row.monitor_id, (Status.UNKNOWN, None))
            figures = daily_uptime(timeline, windows)
            items.append(
                {
                    "monitor_id": row.monitor_id,
                    "name": row.name,
                    "group": group_of(row.tags or []),
                    "status": Status.PAUSED if row.paused else status,
                    "since": since,
                    "uptime": uptime(timeline, start, now).ratio,
                    "days": [
                        {
                            "date": day,
                            "uptime": figure.ratio,
                            "downtime_seconds": figure.down.total_seconds(),
                        }
                        for day, figure in zip(dates, figures, strict=True)
                    ],
                    "incidents": by_monitor[row.monitor_id],
                }
            )
        # Validated in one call (pydantic-core) rather than model by model: 90 days a monitor.
        body = PublicStatusPage.model_validate(
            {
                "workspace": tenant,
                "title": settings.title if settings else None,
                "logo_url": logo_url(tenant, settings.logo_digest if settings else None),
                "generated_at": now,
                "monitors": items,
            }
        )
        return Response(
            body.model_dump_json(),
            media_type="application/json",
            headers={"cache-control": PAGE_CACHE},
        )

    @router.get(
        "/public/{workspace}/logo",
        summary="The status page's logo (PNG, JPEG or SVG; SVG cannot run script)",
        responses={200: {"content": {kind: {} for kind in LOGO_TYPES}}},
    )
    async def public_logo(workspace: WorkspaceName, request: Request) -> Response:
        tenant = known_name(workspace)
        s = status_pages
        async with sessions() as session:
            row = (
                await session.execute(
                    select(s.c.logo, s.c.logo_type, s.c.logo_digest).where(
                        s.c.tenant == tenant, s.c.logo.is_not(None)
                    )
                )
            ).first()
        if row is None:
            raise not_found("logo")
        headers = {
            "cache-control": LOGO_CACHE,
            "etag": f'"{row.logo_digest}"',
            "content-security-policy": LOGO_POLICY,
        }
        if request.headers.get("if-none-match") == headers["etag"]:
            return Response(status_code=304, headers=headers)
        return Response(bytes(row.logo), media_type=row.logo_type, headers=headers)

    def settings_of(tenant: str, row: Any) -> StatusPageSettings:
        if row is None:
            return StatusPageSettings(
                title=None, logo_url=None, logo_type=None, updated_at=None, updated_by=None
            )
        return StatusPageSettings(
            title=row.title,
            logo_url=logo_url(tenant, row.logo_digest),
            logo_type=row.logo_type,
            updated_at=row.updated_at,
            updated_by=row.updated_by,
        )

    async def save(principal: Principal, values: dict[str, Any]) -> StatusPageSettings:
        changed = {**values, "updated_at": clock(), "updated_by": principal.subject}
        async with sessions() as session, session.begin():
            insert = upsert(session, status_pages).values(tenant=principal.tenant, **changed)
            await session.execute(
                insert.on_conflict_do_update(index_elements=["tenant"], set_=changed)
            )
            row = await page_settings(session, principal.tenant)
        return settings_of(principal.tenant, row)

    @router.get(
        "/status-page",
        response_model=StatusPageSettings,
        summary="The title and logo of the caller's workspace's public status page",
    )
    async def get_settings(principal: Viewer) -> StatusPageSettings:
        async with sessions() as session:
            row = await page_settings(session, principal.tenant)
        return settings_of(principal.tenant, row)

    @router.put(
        "/status-page",
        response_model=StatusPageSettings,
        summary="Set the public status page's title (admins)",
    )
    async def put_settings(body: StatusPageUpdate, principal: Admin) -> StatusPageSettings:
        return await save(principal, {"title": clean_title(body.title)})

    @router.put(
        "/status-page/logo",
        response_model=StatusPageSettings,
        summary=f"Upload the status page's logo (admins): the image itself as the body, "
        f"PNG, JPEG or SVG, at most {MAX_LOGO_BYTES // 1024} KiB",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    kind: {"schema": {"type": "string", "format": "binary"}} for kind in LOGO_TYPES
                },
            }
        },
    )
    async def put_logo(request: Request, principal: Admin) -> StatusPageSettings:
        data = await request.body()
        try:
            kind = check_logo(request.headers.get("content-type", ""), data)
        except LogoRefused as refused:
            raise Problem(
                refused.status,
                "Logo refused",
                str(refused),
                errors=[{"field": "logo", "message": str(refused), "type": "value_error"}],
            ) from None
        return await save(
            principal,
            {"logo": data, "logo_type": kind, "logo_digest": hashlib.sha256(data).hexdigest()},
        )

    @router.delete(
        "/status-page/logo",
        status_code=204,
        summary="Remove the status page's logo (admins)",
    )
    async def delete_logo(principal: Admin) -> Response:
        s = status_pages
        async with sessions() as session, session.begin():
            await session.execute(
                update(s)
                .where(s.c.tenant == principal.tenant)
                .values(
                    logo=None,
                    logo_type=None,
                    logo_digest=None,
                    updated_at=clock(),
                    updated_by=principal.subject,
                )
            )
        return Response(status_code=204)

    return router
