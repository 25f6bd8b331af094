"""/rules: which monitors, which events, which channels, when, how often to remind."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import delete, select, update

from pingtower.common.events import utcnow
from pingtower.common.http.problems import Problem, not_found
from pingtower.common.security import Principal, require
from pingtower.notificator.api.deps import ApiDeps
from pingtower.notificator.api.pagination import after_cursor, encode_cursor
from pingtower.notificator.api.references import check_monitors
from pingtower.notificator.domain.rules import EventKind, Severity
from pingtower.notificator.store.tables import channels, rules

WEEK = 7 * 86_400


class RuleFields(BaseModel):
    """Validation shared by create and (merged) update."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    monitor_ids: list[uuid.UUID] = Field(
        default_factory=list, max_length=1000, description="Monitors by id (or by tags)."
    )
    tags: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="Monitors carrying any of these tags. No ids and no tags: every monitor.",
    )
    events: list[EventKind] = Field(min_length=1)
    channel_ids: list[uuid.UUID] = Field(min_length=1, max_length=50)
    delay_seconds: int = Field(0, ge=0, le=WEEK, description="Only if still down after this.")
    reminder_interval_seconds: int = Field(0, ge=0, le=WEEK, description="0: no reminders.")
    reminder_count: int = Field(0, ge=0, le=100)
    severity: Severity = Severity.CRITICAL
    enabled: bool = True
    flap_threshold: int = Field(
        0,
        ge=0,
        le=100,
        description="More status changes than this within flap_window_seconds: one 'flapping' "
        "notice, then silence until the monitor is stable. 0: no flap damping.",
    )
    flap_window_seconds: int = Field(900, ge=60, le=86_400)
    group_window_seconds: int = Field(
        0,
        ge=0,
        le=3600,
        description="Wait this long after a change, then send every waiting message of this "
        "rule to a channel as one grouped message. 0: a message per monitor at once.",
    )

    escalation_channel_ids: list[uuid.UUID] = Field(
        default_factory=list,
        max_length=50,
        description="Channels told when a DOWN stays unacknowledged for escalate_after_seconds.",
    )
    escalate_after_seconds: int = Field(0, ge=0, le=WEEK, description="0: no escalation.")
    latency_threshold_ms: float | None = Field(
        None,
        gt=0,
        le=600_000,
        description="With the 'latency' event: successful checks slower than this alert.",
    )
    latency_checks: int = Field(
        3, ge=1, le=100, description="How many slow checks in a row open a latency alert."
    )
    cert_expiry_days: list[int] = Field(
        default_factory=list,
        max_length=10,
        description="With the 'cert_expiring' event: one message per certificate as it comes "
        "within each of these many days of expiry.",
    )

    @model_validator(mode="after")
    def _reminders_need_interval(self) -> RuleFields:
        if self.reminder_count > 0 and self.reminder_interval_seconds < 60:
            raise ValueError("reminder_count needs reminder_interval_seconds of at least 60")
        if bool(self.escalation_channel_ids) != (self.escalate_after_seconds > 0):
            raise ValueError(
                "escalation needs both escalation_channel_ids and escalate_after_seconds"
            )
        if (EventKind.LATENCY in self.events) != (self.latency_threshold_ms is not None):
            raise ValueError("the 'latency' event and latency_threshold_ms go together")
        if (EventKind.CERT_EXPIRING in self.events) != bool(self.cert_expiry_days):
            raise ValueError("the 'cert_expiring' event and cert_expiry_days go together")
        if any(days < 0 or days > 365 for days in self.cert_expiry_days):
            raise ValueError("cert_expiry_days must lie between 0 and 365")
        return self


class RuleCreate(RuleFields):
    pass


class RuleUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=200)
    monitor_ids: list[uuid.UUID] | None = None
    tags: list[str] | None = None
    events: list[EventKind] | None = None
    channel_ids: list[uuid.UUID] | None = None
    delay_seconds: int | None = None
    reminder_interval_seconds: int | None = None
    reminder_count: int | None = None
    severity: Severity | None = None
    enabled: bool | None = None
    flap_threshold: int | None = None
    flap_window_seconds: int | None = None
    group_window_seconds: int | None = None
    escalation_channel_ids: list[uuid.UUID] | None = None
    escalate_after_seconds: int | None = None
    latency_threshold_ms: float | None = None
    latency_checks: int | None = None
    cert_expiry_days: list[int] | None = None


class RulePublic(RuleFields):
    model_config = ConfigDict(extra="ignore")
    id: uuid.UUID
    created_at: datetime
    updated_at: datetime


class RulePage(BaseModel):
    items: list[RulePublic]
    next_cursor: str | None


def _public(row: Any) -> RulePublic:
    return RulePublic.model_validate(dict(row._mapping))


def _stored(fields: RuleFields) -> dict[str, Any]:
    values = fields.model_dump(mode="json")
    values["monitor_ids"] = sorted(set(values["monitor_ids"]))
    values["tags"] = sorted(set(values["tags"]))
    values["events"] = sorted(set(values["events"]))
    values["channel_ids"] = list(dict.fromkeys(values["channel_ids"]))
    values["escalation_channel_ids"] = list(dict.fromkeys(values["escalation_channel_ids"]))
    values["cert_expiry_days"] = sorted(set(values["cert_expiry_days"]), reverse=True)
    return values


async def _check_channels(
    session: Any, tenant: str, channel_ids: list[uuid.UUID], field: str = "channel_ids"
) -> None:
    found = set(
        (
            await session.scalars(
                select(channels.c.id).where(
                    channels.c.tenant == tenant, channels.c.id.in_(channel_ids)
                )
            )
        ).all()
    )
    missing = [str(c) for c in channel_ids if c not in found]
    if missing:
        raise Problem(
            422,
            "Validation failed",
            f"{field}: no such channel: {', '.join(missing)}",
            errors=[{"field": field, "message": f"no such channel: {', '.join(missing)}"}],
        )


def rules_router(deps: ApiDeps) -> APIRouter:
    router = APIRouter(prefix="/rules", tags=["rules"])

    async def load(session: Any, tenant: str, rule_id: uuid.UUID) -> Any:
        row = (
            await session.execute(
                select(rules).where(rules.c.id == rule_id, rules.c.tenant == tenant)
            )
        ).first()
        if row is None:
            raise not_found("rule")
        return row

    @router.post("", status_code=201, response_model=RulePublic)
    async def create_rule(
        body: RuleCreate, principal: Principal = Depends(require("editor"))
    ) -> RulePublic:
        now = utcnow()
        rule_id = uuid.uuid4()
        async with deps.sessions() as session, session.begin():
            await _check_channels(session, principal.tenant, body.channel_ids)
            await _check_channels(
                session, principal.tenant, body.escalation_channel_ids, "escalation_channel_ids"
            )
            await check_monitors(session, principal.tenant, body.monitor_ids)
            await session.execute(
                rules.insert().values(
                    id=rule_id,
                    tenant=principal.tenant,
                    created_at=now,
                    updated_at=now,
                    **_stored(body),
                )
            )
            return _public(await load(session, principal.tenant, rule_id))

    @router.get("", response_model=RulePage)
    async def list_rules(
        limit: int = Query(50, ge=1, le=500),
        cursor: str | None = None,
        principal: Principal = Depends(require("viewer")),
    ) -> RulePage:
        async with deps.sessions() as session:
            rows = (
                await session.execute(
                    select(rules)
                    .where(
                        rules.c.tenant == principal.tenant,
                        after_cursor(rules.c.created_at, rules.c.id, cursor, descending=False),
                    )
                    .order_by(rules.c.created_at, rules.c.id)
                    .limit(limit + 1)
                )
            ).all()
        page = rows[:limit]
        next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
        return RulePage(items=[_public(r) for r in page], next_cursor=next_cursor)

    @router.get("/{rule_id}", response_model=RulePublic)
    async def get_rule(
        rule_id: uuid.UUID, principal: Principal = Depends(require("viewer"))
    ) -> RulePublic:
        async with deps.sessions() as session:
            return _public(await load(session, principal.tenant, rule_id))

    @router.patch("/{rule_id}", response_model=RulePublic)
    async def update_rule(
        rule_id: uuid.UUID, body: RuleUpdate, principal: Principal = Depends(require("editor"))
    ) -> RulePublic:
        async with deps.sessions() as session, session.begin():
            row = await load(session, principal.tenant, rule_id)
            current = {name: getattr(row, name) for name in RuleFields.model_fields}
            merged = {**current, **body.model_dump(exclude_unset=True)}
            try:
                fields = RuleFields.model_validate(merged)
            except ValidationError as exc:
                errors = [
                    {"field": ".".join(str(p) for p in e["loc"]) or "rule", "message": e["msg"]}
                    for e in exc.errors()
                ]
                detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
                raise Problem(422, "Validation failed", detail, errors=errors) from None
            await _check_channels(session, principal.tenant, fields.channel_ids)
            await _check_channels(
                session, principal.tenant, fields.escalation_channel_ids, "escalation_channel_ids"
            )
            await check_monitors(session, principal.tenant, fields.monitor_ids)
            await session.execute(
                update(rules)
                .where(rules.c.id == rule_id)
                .values(updated_at=utcnow(), **_stored(fields))
            )
            return _public(await load(session, principal.tenant, rule_id))

    @router.delete("/{rule_id}", status_code=204)
    async def delete_rule(
        rule_id: uuid.UUID, principal: Principal = Depends(require("editor"))
    ) -> Response:
        async with deps.sessions() as session, session.begin():
            await load(session, principal.tenant, rule_id)
            await session.execute(delete(rules).where(rules.c.id == rule_id))
        return Response(status_code=204)

    return router
