"""Loading rules and monitors as domain values."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pingtower.notificator.domain.rules import EventKind, MonitorView, Rule, Severity
from pingtower.notificator.domain.silences import Silence
from pingtower.notificator.store.tables import monitors, rules, silences


def rule_from_row(row: Any) -> Rule:
    return Rule(
        rule_id=row.id,
        tenant=row.tenant,
        name=row.name,
        events=frozenset(EventKind(e) for e in row.events),
        channel_ids=tuple(uuid.UUID(c) for c in row.channel_ids),
        monitor_ids=frozenset(uuid.UUID(m) for m in row.monitor_ids),
        tags=frozenset(row.tags),
        delay_seconds=row.delay_seconds,
        reminder_interval_seconds=row.reminder_interval_seconds,
        reminder_count=row.reminder_count,
        severity=Severity(row.severity),
        enabled=row.enabled,
        flap_threshold=row.flap_threshold,
        flap_window_seconds=row.flap_window_seconds,
        group_window_seconds=row.group_window_seconds,
        escalation_channel_ids=tuple(uuid.UUID(c) for c in row.escalation_channel_ids),
        escalate_after_seconds=row.escalate_after_seconds,
        latency_threshold_ms=row.latency_threshold_ms,
        latency_checks=row.latency_checks,
        cert_expiry_days=tuple(row.cert_expiry_days or ()),
    )


async def tenant_rules(session: AsyncSession, tenant: str) -> list[Rule]:
    rows = (await session.execute(select(rules).where(rules.c.tenant == tenant))).all()
    return [rule_from_row(row) for row in rows]


def monitor_from_row(row: Any) -> MonitorView:
    return MonitorView(
        monitor_id=row.monitor_id,
        tenant=row.tenant,
        name=row.name,
        target=row.target,
        type=row.type,
        tags=tuple(row.tags),
        parent_id=row.parent_id,
    )


async def load_monitor(session: AsyncSession, monitor_id: uuid.UUID, *, lock: bool = False) -> Any:
    """The projection row; `lock` holds it until commit, which serialises the status events of
    one monitor across replicas (PostgreSQL row lock; SQLite has one writer at a time anyway)."""
    query = select(monitors).where(monitors.c.monitor_id == monitor_id)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).first()


async def active_silences(
    session: AsyncSession, tenant: str, at: datetime, *, until: datetime | None = None
) -> list[Silence]:
    """Silences of the workspace active at `at`; with `until`, active at any time in
    [at, until) (a batch of events spanning a while; the domain checks each event's time)."""
    rows = (
        await session.execute(
            select(silences).where(
                silences.c.tenant == tenant,
                silences.c.starts_at <= (until or at),
                silences.c.ends_at > at,
            )
        )
    ).all()
    return [
        Silence(
            silence_id=row.id,
            tenant=row.tenant,
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            monitor_ids=frozenset(uuid.UUID(m) for m in row.monitor_ids),
            tags=frozenset(row.tags),
        )
        for row in rows
    ]
