"""slo.burn_rate_exceeded: the Statistics service saw an SLO burn its error budget too fast.

Statistics emits one event when an SLO starts burning and re-arms once it stops, so each event is
one notice: an alert that opens and resolves at once (there is no "stopped burning" event to
close it), with one message per channel of every rule asking for "slo" events that selects the
SLO's monitor or tag. The alert id derives from the event id, so a redelivered event adds nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from pingtower.common.events import Envelope, SloBurnRateExceeded
from pingtower.notificator.check_results import monitor_context, queue_deliveries
from pingtower.notificator.domain.rules import EventKind, MonitorView, Rule, slo_selects
from pingtower.notificator.domain.silences import Silence, is_silenced
from pingtower.notificator.store.rules import load_monitor, monitor_from_row
from pingtower.notificator.store.sql import insert_ignoring_duplicates
from pingtower.notificator.store.tables import alerts

SLO = "slo"


async def apply_slo_event(
    session: AsyncSession,
    envelope: Envelope,
    event: SloBurnRateExceeded,
    rules: Sequence[Rule],
    silences: Sequence[Silence],
    public_url: str | None,
) -> int:
    """Queue the notices of one event; the number of deliveries queued."""
    wanting = [rule for rule in rules if rule.enabled and EventKind.SLO in rule.events]
    if not wanting:
        return 0
    monitor: MonitorView | None = None
    if event.monitor_id is not None:
        row = await load_monitor(session, event.monitor_id)
        if row is not None and row.tenant == envelope.tenant:
            monitor = monitor_from_row(row)
            if is_silenced(silences, monitor, envelope.occurred_at):
                return 0
    # For an SLO over a tag no single monitor is concerned: the alert's subject is the SLO.
    subject = event.monitor_id or event.slo_id
    link = f"{public_url}/slos/{event.slo_id}" if public_url else None
    queued = 0
    for rule in wanting:
        if not slo_selects(rule, monitor, event.tag):
            continue
        alert_id = uuid.uuid5(envelope.id, str(rule.rule_id))
        await session.execute(
            insert_ignoring_duplicates(session, alerts).values(
                id=alert_id,
                tenant=envelope.tenant,
                rule_id=rule.rule_id,
                monitor_id=subject,
                open_key=None,
                problem=SLO,
                severity=rule.severity.value,
                status="resolved",
                opened_at=envelope.occurred_at,
                resolved_at=envelope.occurred_at,
                error=f"burn rate {event.burn_rate_long:.1f}x over "
                f"{event.long_window_seconds // 3600 or 1}h (threshold {event.threshold:g}x)",
            )
        )
        context = {
            "monitor": monitor_context(monitor) if monitor else None,
            "alert_id": str(alert_id),
            "rule": {"id": str(rule.rule_id), "name": rule.name},
            "changed_at": envelope.occurred_at.isoformat(),
            "since": envelope.occurred_at.isoformat(),
            "sequence": 0,
            "link": link,
            "slo": {
                "id": str(event.slo_id),
                "tag": event.tag,
                "objective": event.objective,
                "burn_rate_long": event.burn_rate_long,
                "burn_rate_short": event.burn_rate_short,
                "long_window_seconds": event.long_window_seconds,
                "short_window_seconds": event.short_window_seconds,
                "threshold": event.threshold,
            },
        }
        queued += await queue_deliveries(
            session, rule, envelope.tenant, subject, alert_id, SLO, 0, context
        )
    return queued
