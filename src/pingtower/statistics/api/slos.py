"""/api/v1/stats/slos: objectives for a monitor or a tag, with their error budget and burn
rates. Viewers read; editors create, change and delete, except the SLOs that monitors carry in
their settings (store/monitor_slos.py): those are listed like the others, and changed or removed
only through their monitor."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pingtower.common.http.problems import Problem, not_found
from pingtower.statistics.api.params import Cursor, Editor, Viewer, decode_cursor, encode_cursor
from pingtower.statistics.api.schemas import Slo, SloCreate, SloPage, SloUpdate
from pingtower.statistics.store import queries
from pingtower.statistics.store import slos as store
from pingtower.statistics.store.monitor_slos import managed_by_monitor
from pingtower.statistics.store.tables import slos


def build_slo_router(
    sessions: async_sessionmaker[AsyncSession], clock: Callable[[], datetime]
) -> APIRouter:
    router = APIRouter(prefix="/stats/slos", tags=["slos"])

    async def public(session: AsyncSession, row: Any) -> Slo:
        figures = await store.report(session, row, clock())
        return Slo(
            slo_id=row.slo_id,
            name=row.name,
            monitor_id=row.monitor_id,
            tag=row.tag,
            objective=row.objective,
            window_days=row.window_days,
            created_at=row.created_at,
            uptime=figures.budget.uptime,
            error_budget_consumed=figures.budget.consumed,
            error_budget_remaining=figures.budget.remaining,
            burn_rates=figures.burn_rates,
            alerting_since=figures.alerting_since,
        )

    async def owned(session: AsyncSession, tenant: str, slo_id: uuid.UUID) -> Any:
        row = (
            await session.execute(
                select(slos).where(slos.c.slo_id == slo_id, slos.c.tenant == tenant)
            )
        ).first()
        if row is None:
            raise not_found("SLO")
        return row

    async def refuse_if_managed(session: AsyncSession, tenant: str, row: Any) -> None:
        """409 for an SLO that a monitor's settings own: a change here would be undone by the
        monitor's next update, so it is made there."""
        if not managed_by_monitor(row):
            return
        monitor = await queries.monitor(session, tenant, row.monitor_id)
        name = monitor.name if monitor is not None else row.name
        raise Problem(
            409,
            "Managed by the monitor",
            f"this SLO is managed by the settings of monitor {name!r} ({row.monitor_id}); "
            "change or remove the monitor's `slo` (monitors API, dashboard or monitors as code) "
            "instead",
        )

    @router.post("", status_code=201, response_model=Slo, summary="Create an SLO")
    async def create(body: SloCreate, principal: Editor) -> Slo:
        async with sessions() as session, session.begin():
            if (
                body.monitor_id is not None
                and await queries.monitor(session, principal.tenant, body.monitor_id) is None
            ):
                raise Problem(
                    422,
                    "Validation failed",
                    "monitor_id: no such monitor in this workspace",
                    errors=[{"field": "monitor_id", "message": "no such monitor"}],
                )
            slo_id = uuid.uuid4()
            await session.execute(
                slos.insert().values(
                    slo_id=slo_id,
                    tenant=principal.tenant,
                    created_at=clock(),
                    **body.model_dump(),
                )
            )
            return await public(session, await owned(session, principal.tenant, slo_id))

    @router.get("", response_model=SloPage, summary="SLOs of the workspace")
    async def list_slos(
        principal: Viewer,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Cursor = None,
    ) -> SloPage:
        query = select(slos).where(slos.c.tenant == principal.tenant)
        if cursor:
            at, key = decode_cursor(cursor)
            query = query.where(
                or_(slos.c.created_at > at, and_(slos.c.created_at == at, slos.c.slo_id > key))
            )
        query = query.order_by(slos.c.created_at, slos.c.slo_id).limit(limit + 1)
        async with sessions() as session:
            rows = (await session.execute(query)).all()
            items = [await public(session, row) for row in rows[:limit]]
        more = len(rows) > limit
        last = rows[limit - 1] if more else None
        return SloPage(
            items=items,
            next_cursor=encode_cursor(last.created_at, last.slo_id) if last else None,
        )

    @router.get("/{slo_id}", response_model=Slo, summary="One SLO with its budget")
    async def get(slo_id: uuid.UUID, principal: Viewer) -> Slo:
        async with sessions() as session:
            return await public(session, await owned(session, principal.tenant, slo_id))

    @router.patch("/{slo_id}", response_model=Slo, summary="Change an SLO")
    async def change(slo_id: uuid.UUID, body: SloUpdate, principal: Editor) -> Slo:
        values = body.model_dump(exclude_unset=True, exclude_none=True)
        async with sessions() as session, session.begin():
            await refuse_if_managed(
                session, principal.tenant, await owned(session, principal.tenant, slo_id)
            )
            if values:
                await session.execute(update(slos).where(slos.c.slo_id == slo_id).values(**values))
            return await public(session, await owned(session, principal.tenant, slo_id))

    @router.delete("/{slo_id}", status_code=204, summary="Delete an SLO")
    async def remove(slo_id: uuid.UUID, principal: Editor) -> Response:
        async with sessions() as session, session.begin():
            await refuse_if_managed(
                session, principal.tenant, await owned(session, principal.tenant, slo_id)
            )
            await session.execute(delete(slos).where(slos.c.slo_id == slo_id))
        return Response(status_code=204)

    return router
