"""/api/v1/monitors: create (one, or a batch in one transaction), list, read, update, delete,
pause, resume, check now, results.

Every query is scoped by the caller's workspace; another workspace's monitor answers 404. Each
change writes its `monitor.*` event through the outbox in the same transaction.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from pingtower.common.egress import refusal_for_target
from pingtower.common.events import (
    MonitorCreated,
    MonitorDeleted,
    MonitorUpdated,
    Status,
    utcnow,
)
from pingtower.common.http.problems import Problem, not_found
from pingtower.common.messaging.bus import Bus
from pingtower.common.security import Principal, require
from pingtower.common.settings import Settings
from pingtower.pinger.api.schemas import (
    CheckQueued,
    MonitorBatchCreate,
    MonitorBatchPublic,
    MonitorCreate,
    MonitorPage,
    MonitorPublic,
    MonitorUpdate,
    ResultPage,
    ResultPublic,
)
from pingtower.pinger.api.targets import network_targets
from pingtower.pinger.checks.base import get_check
from pingtower.pinger.domain.monitor import (
    EDITABLE_FIELDS,
    InvalidSettingError,
    validate_timing,
)
from pingtower.pinger.domain.schedule import validate_cron
from pingtower.pinger.domain.secrets import mask_secrets, merge_secrets
from pingtower.pinger.domain.status import pause, resume
from pingtower.pinger.scheduler.jobs import templates_of
from pingtower.pinger.store import monitors as store
from pingtower.pinger.store.database import PingerDatabase
from pingtower.pinger.store.states import (
    commit_decision,
    initial_state_row,
    load_state,
    state_from_row,
)
from pingtower.pinger.store.tables import heartbeats, monitor_states, monitors

# Namespace of the per-workspace advisory lock that serialises creates against the quota (the
# two-key form: its key space cannot collide with the single-key locks used elsewhere).
_QUOTA_LOCK = 0x50_54_51  # "PTQ"

# Every editable field, as the API names them (`parent_id`, and `public`, which monitors as code
# leaves out): see EDITABLE_FIELDS.
EDITABLE = EDITABLE_FIELDS


def _invalid(*errors: InvalidSettingError) -> Problem:
    return Problem(
        422,
        "Validation failed",
        "; ".join(f"{error.field}: {error.message}" for error in errors),
        errors=[{"field": error.field, "message": error.message} for error in errors],
    )


def _result(row: Any) -> ResultPublic:
    return ResultPublic.model_validate(row, from_attributes=True)


def _snapshot(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "monitor_id": values["id"],
        "name": values["name"],
        "type": values["type"],
        "target": values["target"],
        "tags": values["tags"],
        "interval_seconds": values["interval_seconds"],
        "regions": values["regions"],
        "parent_id": values["parent_id"],
        "paused": values["paused"],
        "public": values["public"],
        "slo": values["slo"],
    }


def _may_publish(principal: Principal, public: bool, was_public: bool = False) -> None:
    """Only an admin manages what the public status page shows."""
    if public != was_public and not principal.has("admin"):
        raise Problem(403, "Forbidden", "public: only an admin can publish or unpublish a monitor")


async def _refuse_over_quota(
    session: AsyncSession, tenant: str, quota: int, adding: int = 1
) -> None:
    """409 when `adding` more monitors would take the workspace past `quota` (0: no quota). On
    PostgreSQL creates in one workspace take a lock first, so two at once cannot both pass the
    count; SQLite transactions write one at a time already."""
    if quota == 0:
        return
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            text("SELECT pg_advisory_xact_lock(:space, hashtext(:tenant))"),
            {"space": _QUOTA_LOCK, "tenant": tenant},
        )
    count = await session.scalar(
        select(func.count())
        .select_from(monitors)
        .where(monitors.c.tenant == tenant, monitors.c.deleted_at.is_(None))
    )
    count = count or 0
    if count + adding <= quota:
        return
    if adding == 1:
        detail = (
            f"this workspace has {count} monitors, the most allowed "
            f"(PINGTOWER_MAX_MONITORS_PER_WORKSPACE={quota}); delete some first"
        )
    else:
        detail = (
            f"this workspace has {count} of at most {quota} monitors "
            f"(PINGTOWER_MAX_MONITORS_PER_WORKSPACE={quota}): {max(0, quota - count)} more "
            f"fit, the batch has {adding}; nothing was created"
        )
    raise Problem(409, "Monitor quota reached", detail)


def _new_values(body: MonitorCreate, min_interval: int) -> dict[str, Any]:
    """A create body's fields with a new id and the server's defaults; InvalidSettingError when
    the settings carry a masked secret (there is no stored value to keep)."""
    values = body.model_dump()
    values["id"] = uuid.uuid4()
    interval = values["interval_seconds"]
    if values["timeout_seconds"] is None:
        values["timeout_seconds"] = float(min(10, interval))
    if values["failures_before_down"] is None:
        values["failures_before_down"] = 1 if values["type"] == "heartbeat" else 2
    if values["retry_interval_seconds"] is None:
        values["retry_interval_seconds"] = min(interval, max(min_interval, interval // 3))
    values["settings"] = merge_secrets(values["settings"], None)
    return values


def monitors_router(db: PingerDatabase, bus: Bus, settings: Settings) -> APIRouter:
    router = APIRouter(prefix="/monitors", tags=["monitors"])

    async def refuse_egress(values: dict[str, Any]) -> None:
        """422 naming the field whose address the egress policy refuses. Inside the
        transaction, after the fields are normalised: a literal address costs no lookup, and a
        name's lookup is bounded (see refusal_for_target)."""
        for target in network_targets(values["type"], values["target"], values["settings"]):
            refusal = await refusal_for_target(
                target.host_or_url,
                allow_private=settings.allow_private_targets,
                allow_networks=settings.egress_allow_networks,
                schemes=target.schemes,
            )
            if refusal is not None:
                raise InvalidSettingError(target.field, refusal)

    async def normalised(
        session: AsyncSession, tenant: str, values: dict[str, Any], monitor_id: uuid.UUID
    ) -> dict[str, Any]:
        """The monitor's fields normalised; InvalidSettingError naming the field that is wrong."""
        check = get_check(values["type"])
        values["target"], values["settings"] = check.validate(values["target"], values["settings"])
        validate_timing(
            interval=values["interval_seconds"],
            timeout=values["timeout_seconds"],
            retry_interval=values["retry_interval_seconds"],
            min_interval=settings.min_interval_seconds,
        )
        if values["cron"] is not None:
            validate_cron(values["cron"], values["timezone"], settings.min_interval_seconds)
        quorum = values["failure_quorum"]
        if quorum is not None and quorum > len(values["regions"]):
            raise InvalidSettingError("failure_quorum", "cannot exceed the number of regions")
        parent = values["parent_id"]
        if parent is not None and (
            parent == monitor_id or not await store.monitor_exists(session, tenant, parent)
        ):
            raise InvalidSettingError("parent_id", "no such monitor in this workspace")
        await refuse_egress(values)
        values["tags"] = sorted(set(values["tags"]))
        values["regions"] = list(dict.fromkeys(values["regions"]))
        return values

    async def validated(
        session: AsyncSession, tenant: str, values: dict[str, Any], monitor_id: uuid.UUID
    ) -> dict[str, Any]:
        """The monitor's fields normalised, or 422 naming the field that is wrong."""
        try:
            return await normalised(session, tenant, values, monitor_id)
        except InvalidSettingError as error:
            raise _invalid(error) from None

    async def insert_new(
        session: AsyncSession, tenant: str, batch: list[dict[str, Any]]
    ) -> list[MonitorPublic]:
        """Writes validated new monitors, their first states and a `monitor.created` event each;
        what the API shows of them, in order. One statement per table, not per monitor: a
        statement's round trip, not the row, is what a batch of hundreds would spend."""
        now = utcnow()
        for values in batch:
            values.update(tenant=tenant, created_at=now, updated_at=now)
        await store.insert_monitors(session, batch)
        await session.execute(
            monitor_states.insert(),
            [initial_state_row(v["id"], tenant, paused=v["paused"]) for v in batch],
        )
        keys = [
            # Looked at by the lateness watcher from its next poll (check_at: now).
            {"monitor_id": v["id"], "ping_key": uuid.uuid4(), "check_at": now}
            for v in batch
            if v["type"] == "heartbeat"
        ]
        if keys:
            await session.execute(heartbeats.insert(), keys)
        for values in batch:
            await db.outbox.add(session, MonitorCreated(**_snapshot(values)), tenant=tenant)
        rows = await store.get_monitors(session, tenant, [v["id"] for v in batch])
        return [await _public(session, rows[v["id"]]) for v in batch]

    async def public(session: AsyncSession, tenant: str, monitor_id: uuid.UUID) -> MonitorPublic:
        row = await store.get_monitor(session, tenant, monitor_id)
        if row is None:
            raise not_found("monitor")
        return await _public(session, row)

    async def _public(session: AsyncSession, row: Any) -> MonitorPublic:
        last = None
        if row.last_result_id is not None:
            found = await store.get_result(session, row.last_result_id)
            last = _result(found) if found is not None else None
        data = dict(row._mapping)
        data["settings"] = mask_secrets(data["settings"])  # secrets are write-only
        data["last_result"] = last
        if row.type == "heartbeat":
            key = await session.scalar(
                select(heartbeats.c.ping_key).where(heartbeats.c.monitor_id == row.id)
            )
            data["ping_url"] = f"/ping/{key}" if key else None
        return MonitorPublic.model_validate(data)

    @router.post("", status_code=201, response_model=MonitorPublic)
    async def create_monitor(
        body: MonitorCreate, principal: Principal = Depends(require("editor"))
    ) -> MonitorPublic:
        _may_publish(principal, body.public)
        try:
            values = _new_values(body, settings.min_interval_seconds)
        except InvalidSettingError as error:
            raise _invalid(error) from None
        async with db.sessions() as session, session.begin():
            values = await validated(session, principal.tenant, values, values["id"])
            await _refuse_over_quota(session, principal.tenant, settings.max_monitors_per_workspace)
            (created,) = await insert_new(session, principal.tenant, [values])
            return created

    # Declared before the `/{monitor_id}` routes, although no POST route has that shape today.
    @router.post("/batch", status_code=201, response_model=MonitorBatchPublic)
    async def create_monitor_batch(
        body: MonitorBatchCreate, principal: Principal = Depends(require("editor"))
    ) -> MonitorBatchPublic:
        """Creates all the monitors in one transaction, or none: an invalid item refuses the
        batch with 422 naming every wrong item's field (`monitors.3.target`), and the quota is
        checked once for the whole batch. A parent must exist already."""
        for item in body.monitors:
            _may_publish(principal, item.public)
        tenant = principal.tenant
        async with db.sessions() as session, session.begin():
            batch: list[dict[str, Any]] = []
            errors: list[InvalidSettingError] = []
            for index, item in enumerate(body.monitors):
                try:
                    values = _new_values(item, settings.min_interval_seconds)
                    batch.append(await normalised(session, tenant, values, values["id"]))
                except InvalidSettingError as error:
                    errors.append(
                        InvalidSettingError(f"monitors.{index}.{error.field}", error.message)
                    )
            if errors:
                raise _invalid(*errors)
            await _refuse_over_quota(
                session, tenant, settings.max_monitors_per_workspace, adding=len(batch)
            )
            return MonitorBatchPublic(monitors=await insert_new(session, tenant, batch))

    @router.get("", response_model=MonitorPage)
    async def list_monitors(
        principal: Principal = Depends(require("viewer")),
        status: Status | None = None,
        tag: str | None = None,
        type: str | None = None,
        q: str | None = Query(None, max_length=200, description="Text in the name or target."),
        cursor: str | None = None,
        limit: int = Query(50, ge=1, le=500),
    ) -> MonitorPage:
        async with db.sessions() as session:
            rows, next_cursor = await store.list_monitors(
                session,
                principal.tenant,
                status=status.value if status else None,
                tag=tag,
                type_=type,
                text=q,
                cursor=cursor,
                limit=limit,
            )
            items = [await _public(session, row) for row in rows]
        return MonitorPage(items=items, next_cursor=next_cursor)

    @router.get("/{monitor_id}", response_model=MonitorPublic)
    async def get_monitor(
        monitor_id: uuid.UUID, principal: Principal = Depends(require("viewer"))
    ) -> MonitorPublic:
        async with db.sessions() as session:
            return await public(session, principal.tenant, monitor_id)

    @router.patch("/{monitor_id}", response_model=MonitorPublic)
    async def update_monitor(
        monitor_id: uuid.UUID,
        body: MonitorUpdate,
        principal: Principal = Depends(require("editor")),
    ) -> MonitorPublic:
        changes = body.model_dump(exclude_unset=True)
        for field, value in changes.items():
            if value is None and field not in ("parent_id", "failure_quorum", "cron", "slo"):
                raise _invalid(InvalidSettingError(field, "may not be null"))
        async with db.sessions() as session, session.begin():
            row = await store.get_monitor(session, principal.tenant, monitor_id)
            if row is None:
                raise not_found("monitor")
            current = {field: getattr(row, field) for field in EDITABLE}
            _may_publish(principal, changes.get("public", row.public), row.public)
            if (
                "heartbeat" in (row.type, changes.get("type", row.type))
                and changes.get("type", row.type) != row.type
            ):
                raise _invalid(
                    InvalidSettingError("type", "a heartbeat cannot become another type or back")
                )
            if "type" in changes and "settings" not in changes and changes["type"] != row.type:
                changes["settings"] = {}  # another type's settings cannot carry over
            if "settings" in changes:
                # Masked or omitted secrets keep their stored values, within the same type only.
                same_type = changes.get("type", row.type) == row.type
                try:
                    changes["settings"] = merge_secrets(
                        changes["settings"], row.settings if same_type else None
                    )
                except InvalidSettingError as error:
                    raise _invalid(error) from None
            values = await validated(
                session, principal.tenant, {**current, **changes, "id": monitor_id}, monitor_id
            )
            values.pop("id")
            values["updated_at"] = utcnow()
            await store.update_monitor(session, monitor_id, values)
            await db.outbox.add(
                session,
                MonitorUpdated(**_snapshot({**values, "id": monitor_id})),
                tenant=principal.tenant,
            )
            return await public(session, principal.tenant, monitor_id)

    @router.delete("/{monitor_id}", status_code=204)
    async def delete_monitor(
        monitor_id: uuid.UUID, principal: Principal = Depends(require("editor"))
    ) -> Response:
        async with db.sessions() as session, session.begin():
            if not await store.monitor_exists(session, principal.tenant, monitor_id):
                raise not_found("monitor")
            now = utcnow()
            await store.update_monitor(session, monitor_id, {"deleted_at": now, "updated_at": now})
            await db.outbox.add(
                session, MonitorDeleted(monitor_id=monitor_id), tenant=principal.tenant
            )
        return Response(status_code=204)

    async def set_paused(tenant: str, monitor_id: uuid.UUID, paused: bool) -> MonitorPublic:
        async with db.sessions() as session, session.begin():
            row = await store.get_monitor(session, tenant, monitor_id)
            if row is None:
                raise not_found("monitor")
            state_row = await load_state(session, monitor_id)
            assert state_row is not None
            now = utcnow()
            decide = pause if paused else resume
            decision = decide(state_from_row(state_row), now)
            await commit_decision(
                session, db.outbox, tenant=tenant, monitor_id=monitor_id, decision=decision
            )
            if row.paused != paused:
                values = {"paused": paused, "updated_at": now}
                await store.update_monitor(session, monitor_id, values)
                snapshot = {field: getattr(row, field) for field in EDITABLE}
                snapshot.update(id=monitor_id, paused=paused)
                await db.outbox.add(session, MonitorUpdated(**_snapshot(snapshot)), tenant=tenant)
            return await public(session, tenant, monitor_id)

    @router.post("/{monitor_id}/pause", response_model=MonitorPublic)
    async def pause_monitor(
        monitor_id: uuid.UUID, principal: Principal = Depends(require("editor"))
    ) -> MonitorPublic:
        return await set_paused(principal.tenant, monitor_id, True)

    @router.post("/{monitor_id}/resume", response_model=MonitorPublic)
    async def resume_monitor(
        monitor_id: uuid.UUID, principal: Principal = Depends(require("editor"))
    ) -> MonitorPublic:
        return await set_paused(principal.tenant, monitor_id, False)

    @router.post("/{monitor_id}/check-now", status_code=202, response_model=CheckQueued)
    async def check_now(
        monitor_id: uuid.UUID, principal: Principal = Depends(require("editor"))
    ) -> CheckQueued:
        async with db.sessions() as session:
            row = await store.get_monitor(session, principal.tenant, monitor_id)
        if row is None:
            raise not_found("monitor")
        if not get_check(row.type).scheduled:
            raise Problem(409, "Conflict", f"{row.type} monitors are not checked by probes")
        now = utcnow()
        job_ids = []
        deadline = now + timedelta(seconds=row.interval_seconds)
        for template in templates_of(row):
            envelope = template.envelope(now, deadline)
            await bus.publish_job(envelope, template.region)
            job_ids.append(envelope.payload["job_id"])
        return CheckQueued(job_ids=job_ids, regions=list(row.regions))

    @router.get("/{monitor_id}/results", response_model=ResultPage)
    async def list_results(
        monitor_id: uuid.UUID,
        principal: Principal = Depends(require("viewer")),
        cursor: str | None = None,
        limit: int = Query(50, ge=1, le=500),
    ) -> ResultPage:
        async with db.sessions() as session:
            if not await store.monitor_exists(session, principal.tenant, monitor_id):
                raise not_found("monitor")
            rows, next_cursor = await store.list_results(
                session, monitor_id, cursor=cursor, limit=limit
            )
        return ResultPage(items=[_result(row) for row in rows], next_cursor=next_cursor)

    return router
