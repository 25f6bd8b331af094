"""/channels: CRUD, and a test send. Secrets are write-only: the API shows "set" or "unset"."""

from __future__ import annotations

import datetime as dt
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import delete, select, update

from pingtower.common.egress import refusal_for_target
from pingtower.common.events import utcnow
from pingtower.common.http.problems import Problem, not_found
from pingtower.common.security import Principal, require
from pingtower.common.settings import Settings
from pingtower.notificator.api.deps import ApiDeps
from pingtower.notificator.api.pagination import after_cursor, encode_cursor
from pingtower.notificator.channels import (
    REGISTRY,
    ChannelError,
    ChannelSettings,
    SendContext,
    channel_type,
)
from pingtower.notificator.rendering import render_message
from pingtower.notificator.store.tables import channels


class QuietHoursSpec(BaseModel):
    """A daily window in a time zone during which the channel's messages wait."""

    model_config = ConfigDict(extra="forbid")
    start: dt.time = Field(description="Local time the window opens, e.g. 22:00.")
    end: dt.time = Field(description="Local time it closes, e.g. 07:00 (may cross midnight).")
    timezone: str = Field("UTC", description="IANA time zone, e.g. Europe/Berlin.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("start", "end")
    @classmethod
    def _naive_minutes(cls, value: dt.time) -> dt.time:
        if value.tzinfo is not None:
            raise ValueError("give a local time without offset; the time zone is separate")
        return value.replace(second=0, microsecond=0)


class ChannelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    type: str = Field(description="A registered channel type, e.g. webhook.")
    settings: dict[str, Any] = Field(description="Settings of the channel type.")
    enabled: bool = True
    rate_limit_per_minute: int | None = Field(
        None, ge=1, le=10_000, description="Messages per minute at most; more wait. None: no limit."
    )
    quiet_hours: QuietHoursSpec | None = None


class ChannelUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=200)
    settings: dict[str, Any] | None = Field(
        None, description="Fields to change; a secret field set to null is removed."
    )
    enabled: bool | None = None
    rate_limit_per_minute: int | None = Field(None, ge=1, le=10_000)
    quiet_hours: QuietHoursSpec | None = None


class ChannelPublic(BaseModel):
    id: uuid.UUID
    name: str
    type: str
    settings: dict[str, Any]
    enabled: bool
    rate_limit_per_minute: int | None
    quiet_hours: QuietHoursSpec | None
    created_at: datetime
    updated_at: datetime


class ChannelPage(BaseModel):
    items: list[ChannelPublic]
    next_cursor: str | None


class TestResult(BaseModel):
    ok: bool
    status_code: int | None = None
    error: str | None = None


def validate_settings(type_name: str, raw: dict[str, Any]) -> ChannelSettings:
    if type_name not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        raise Problem(
            422,
            "Validation failed",
            f"type: unknown channel type {type_name!r} (known: {known})",
            errors=[{"field": "type", "message": f"unknown channel type (known: {known})"}],
        )
    try:
        return channel_type(type_name).settings_model.model_validate(raw)
    except ValidationError as exc:
        errors = [
            {
                "field": ".".join(["settings", *(str(p) for p in e["loc"])]),
                "message": e["msg"],
                "type": e["type"],
            }
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise Problem(422, "Validation failed", detail, errors=errors) from None


async def refuse_egress(model: ChannelSettings, settings: Settings) -> None:
    """422 naming every settings field whose address the egress policy refuses."""
    errors = []
    for field, host_or_url in model.addresses():
        refusal = await refusal_for_target(
            host_or_url,
            allow_private=settings.allow_private_targets,
            allow_networks=settings.egress_allow_networks,
        )
        if refusal is not None:
            errors.append({"field": f"settings.{field}", "message": refusal})
    if errors:
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise Problem(422, "Validation failed", detail, errors=errors)


def split_secrets(model: ChannelSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """(public settings, secret settings) of a validated settings model."""
    secret_names = set(model.SECRET_FIELDS)
    public = model.model_dump(mode="json", exclude=secret_names)
    dumped = model.model_dump(mode="json", include=secret_names)
    secrets = {name: value for name, value in dumped.items() if value not in (None, {}, [], "")}
    return public, secrets


def public_view(row: Any, deps: ApiDeps) -> ChannelPublic:
    model = channel_type(row.type).settings_model
    stored = deps.box.open(row.secrets)
    settings = dict(row.settings)
    for name in model.SECRET_FIELDS:
        settings[name] = "set" if name in stored else "unset"
    return ChannelPublic(
        id=row.id,
        name=row.name,
        type=row.type,
        settings=settings,
        enabled=row.enabled,
        rate_limit_per_minute=row.rate_limit_per_minute,
        quiet_hours=row.quiet_hours,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def channels_router(deps: ApiDeps) -> APIRouter:
    router = APIRouter(prefix="/channels", tags=["channels"])

    async def load(session: Any, tenant: str, channel_id: uuid.UUID) -> Any:
        row = (
            await session.execute(
                select(channels).where(channels.c.id == channel_id, channels.c.tenant == tenant)
            )
        ).first()
        if row is None:
            raise not_found("channel")
        return row

    @router.post("", status_code=201, response_model=ChannelPublic)
    async def create_channel(
        body: ChannelCreate, principal: Principal = Depends(require("editor"))
    ) -> ChannelPublic:
        model = validate_settings(body.type, body.settings)
        await refuse_egress(model, deps.settings)
        public, secrets = split_secrets(model)
        now = utcnow()
        channel_id = uuid.uuid4()
        async with deps.sessions() as session, session.begin():
            await session.execute(
                channels.insert().values(
                    id=channel_id,
                    tenant=principal.tenant,
                    name=body.name,
                    type=body.type,
                    settings=public,
                    secrets=deps.box.seal(secrets) if secrets else None,
                    enabled=body.enabled,
                    rate_limit_per_minute=body.rate_limit_per_minute,
                    quiet_hours=body.quiet_hours.model_dump(mode="json")
                    if body.quiet_hours
                    else None,
                    created_at=now,
                    updated_at=now,
                )
            )
            row = await load(session, principal.tenant, channel_id)
        return public_view(row, deps)

    @router.get("", response_model=ChannelPage)
    async def list_channels(
        limit: int = Query(50, ge=1, le=500),
        cursor: str | None = None,
        principal: Principal = Depends(require("viewer")),
    ) -> ChannelPage:
        async with deps.sessions() as session:
            rows = (
                await session.execute(
                    select(channels)
                    .where(
                        channels.c.tenant == principal.tenant,
                        after_cursor(
                            channels.c.created_at, channels.c.id, cursor, descending=False
                        ),
                    )
                    .order_by(channels.c.created_at, channels.c.id)
                    .limit(limit + 1)
                )
            ).all()
        page = rows[:limit]
        next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
        return ChannelPage(items=[public_view(r, deps) for r in page], next_cursor=next_cursor)

    @router.get("/{channel_id}", response_model=ChannelPublic)
    async def get_channel(
        channel_id: uuid.UUID, principal: Principal = Depends(require("viewer"))
    ) -> ChannelPublic:
        async with deps.sessions() as session:
            return public_view(await load(session, principal.tenant, channel_id), deps)

    @router.patch("/{channel_id}", response_model=ChannelPublic)
    async def update_channel(
        channel_id: uuid.UUID,
        body: ChannelUpdate,
        principal: Principal = Depends(require("editor")),
    ) -> ChannelPublic:
        async with deps.sessions() as session, session.begin():
            row = await load(session, principal.tenant, channel_id)
            values: dict[str, Any] = {"updated_at": utcnow()}
            if body.name is not None:
                values["name"] = body.name
            if body.enabled is not None:
                values["enabled"] = body.enabled
            if "rate_limit_per_minute" in body.model_fields_set:
                values["rate_limit_per_minute"] = body.rate_limit_per_minute
            if "quiet_hours" in body.model_fields_set:
                values["quiet_hours"] = (
                    body.quiet_hours.model_dump(mode="json") if body.quiet_hours else None
                )
            if body.settings is not None:
                merged = {**row.settings, **deps.box.open(row.secrets), **body.settings}
                merged = {k: v for k, v in merged.items() if v is not None}
                model = validate_settings(row.type, merged)
                await refuse_egress(model, deps.settings)
                public, secrets = split_secrets(model)
                values["settings"] = public
                values["secrets"] = deps.box.seal(secrets) if secrets else None
            await session.execute(
                update(channels).where(channels.c.id == channel_id).values(**values)
            )
            row = await load(session, principal.tenant, channel_id)
        return public_view(row, deps)

    @router.delete("/{channel_id}", status_code=204)
    async def delete_channel(
        channel_id: uuid.UUID, principal: Principal = Depends(require("editor"))
    ) -> Response:
        async with deps.sessions() as session, session.begin():
            await load(session, principal.tenant, channel_id)
            # Rules keep the id; the worker cancels deliveries to a channel that is gone.
            await session.execute(delete(channels).where(channels.c.id == channel_id))
        return Response(status_code=204)

    @router.post("/{channel_id}/test", response_model=TestResult)
    async def test_channel(
        channel_id: uuid.UUID, principal: Principal = Depends(require("editor"))
    ) -> TestResult:
        async with deps.sessions() as session:
            row = await load(session, principal.tenant, channel_id)
        kind = channel_type(row.type)
        settings = kind.settings_model.model_validate(
            {**row.settings, **deps.box.open(row.secrets)}
        )
        message = render_message(
            "test", {"channel": {"id": str(row.id), "name": row.name}, "test": True}
        )
        context = SendContext(
            delivery_id=f"test-{uuid.uuid4()}",
            allow_private=deps.settings.allow_private_targets,
            allow_networks=deps.settings.egress_allow_networks,
        )
        try:
            result = await kind.send(message, settings, context)
        except ChannelError as exc:
            return TestResult(ok=False, status_code=exc.status_code, error=str(exc))
        return TestResult(ok=True, status_code=result.status_code)

    return router
