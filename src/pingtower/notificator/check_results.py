"""check.completed: latency and certificate-expiry rules, applied a batch at a time.

Every check result of every monitor passes through here, so the cheap path matters: per batch
and workspace, one read of the rules (shared with the status events of the batch); a workspace
with no latency or certificate rule stops there. Otherwise one locked read of the monitors
concerned, and one write per monitor a rule selects. The decisions themselves are the pure
steps of `domain.check_rules`.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import Counter
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pingtower.common.events import CheckCompleted, Outcome, utcnow
from pingtower.notificator.domain.check_rules import (
    CertNotice,
    CheckSample,
    LatencyChange,
    RuleCheckState,
    cert_step,
    latency_step,
)
from pingtower.notificator.domain.rules import EventKind, MonitorView, Rule
from pingtower.notificator.domain.silences import Silence, is_silenced
from pingtower.notificator.store.rules import monitor_from_row
from pingtower.notificator.store.sql import insert_ignoring_duplicates
from pingtower.notificator.store.tables import alerts, deliveries, monitors

QUEUED = Counter(
    "pingtower_notificator_deliveries_queued_total", "Deliveries queued by rules", ["kind"]
)
LATENCY_KEY = "lat"
CERT_KEY = "crt"
# Monitors in these states tell nobody (as for status changes); their state still advances.
HELD = frozenset({"maintenance", "paused"})


def sample_of(result: CheckCompleted) -> CheckSample:
    return CheckSample(
        at=result.finished_at,
        succeeded=result.outcome in (Outcome.UP, Outcome.DEGRADED),
        latency_ms=result.latency_ms,
        cert_expires_at=result.cert_expires_at,
    )


def selected_monitor_ids(rules: Sequence[Rule], candidates: set[uuid.UUID]) -> set[uuid.UUID]:
    """The candidates some rule may select, without reading them: everything as soon as one rule
    selects by tag or selects all (the tags are in the projection)."""
    if any(rule.matches_all or rule.tags for rule in rules):
        return candidates
    listed: set[uuid.UUID] = set()
    for rule in rules:
        listed |= rule.monitor_ids
    return candidates & listed


def monitor_context(monitor: MonitorView) -> dict[str, Any]:
    return {
        "id": str(monitor.monitor_id),
        "name": monitor.name,
        "target": monitor.target,
        "type": monitor.type,
        "tags": list(monitor.tags),
    }


@dataclass
class _Tally:
    queued: int = 0


class CheckRuleEffects:
    def __init__(self, *, public_url: str | None) -> None:
        self.public_url = public_url

    def _link(self, monitor_id: uuid.UUID) -> str | None:
        return f"{self.public_url}/monitors/{monitor_id}" if self.public_url else None

    async def apply(
        self,
        session: AsyncSession,
        tenant: str,
        results: Sequence[CheckCompleted],
        rules: Sequence[Rule],
        silences: Sequence[Silence],
    ) -> int:
        """Apply one workspace's results of a batch; the number of deliveries queued."""
        check_rules = [rule for rule in rules if rule.wants_check_results]
        if not check_rules:
            return 0
        wanted = selected_monitor_ids(check_rules, {r.monitor_id for r in results})
        if not wanted:
            return 0
        by_monitor: dict[uuid.UUID, list[CheckCompleted]] = defaultdict(list)
        for result in results:
            if result.monitor_id in wanted:
                by_monitor[result.monitor_id].append(result)
        # Locked in id order, so two replicas on overlapping batches cannot deadlock here.
        rows = (
            await session.execute(
                select(monitors)
                .where(monitors.c.monitor_id.in_(sorted(by_monitor)), monitors.c.tenant == tenant)
                .order_by(monitors.c.monitor_id)
                .with_for_update()
            )
        ).all()
        tally = _Tally()
        for row in rows:
            monitor = monitor_from_row(row)
            selecting = [rule for rule in check_rules if rule.matches(monitor)]
            before: dict[str, Any] = dict(row.check_state or {})
            if not selecting and not before:
                continue
            stored = dict(before)
            samples = sorted((sample_of(r) for r in by_monitor[monitor.monitor_id]),
                             key=lambda s: s.at)  # fmt: skip
            for rule in selecting:
                key = str(rule.rule_id)
                state = RuleCheckState.load(stored.get(key))
                for sample in samples:
                    tell = row.status not in HELD and not is_silenced(silences, monitor, sample.at)
                    state = await self._step(session, rule, monitor, state, sample, tell, tally)
                if state.empty:
                    stored.pop(key, None)  # nothing going on: nothing kept
                else:
                    stored[key] = state.dump()
            # Rules that no longer select the monitor (deleted, disabled, edited) keep no state,
            # and their alerts about it are over.
            live = {str(rule.rule_id) for rule in selecting}
            for key in [key for key in stored if key not in live]:
                del stored[key]
                await session.execute(
                    update(alerts)
                    .where(
                        alerts.c.open_key.in_(
                            [f"{key}:{monitor.monitor_id}:{s}" for s in (LATENCY_KEY, CERT_KEY)]
                        )
                    )
                    .values(status="resolved", resolved_at=utcnow(), open_key=None)
                )
            if stored != before:  # a healthy monitor's results write nothing
                await session.execute(
                    update(monitors)
                    .where(monitors.c.monitor_id == monitor.monitor_id)
                    .values(check_state=stored or None)
                )
        return tally.queued

    async def _step(
        self,
        session: AsyncSession,
        rule: Rule,
        monitor: MonitorView,
        state: RuleCheckState,
        sample: CheckSample,
        tell: bool,
        tally: _Tally,
    ) -> RuleCheckState:
        latency, cert = state.latency, state.cert
        # What a message about this rule and check says besides the monitor.
        details: dict[str, Any] = {
            "latency_ms": sample.latency_ms,
            "threshold_ms": rule.latency_threshold_ms,
            "checks": rule.latency_checks,
        }
        if EventKind.LATENCY in rule.events and rule.latency_threshold_ms is not None:
            latency, change = latency_step(
                latency, sample, rule.latency_threshold_ms, rule.latency_checks
            )
            if change is LatencyChange.OPEN:
                alert_id = await self._open(session, rule, monitor, LATENCY_KEY, "latency", sample)
                if tell:
                    await self._queue(
                        session, tally, rule, monitor, alert_id, "latency", 0, sample, details
                    )
            elif change is LatencyChange.RESOLVE:
                resolved = await self._resolve(session, rule, monitor, LATENCY_KEY, sample.at)
                if resolved is not None and tell and EventKind.RECOVERED in rule.events:
                    await self._queue(
                        session, tally, rule, monitor, resolved, "latency_ok", 0, sample, details
                    )
        if EventKind.CERT_EXPIRING in rule.events and rule.cert_expiry_days:
            outcome = cert_step(cert, sample, rule.cert_expiry_days)
            if outcome.renewed:
                await self._resolve(session, rule, monitor, CERT_KEY, sample.at)
            notice = outcome.notice
            if notice is not None:
                alert_id = await self._cert_alert(session, rule, monitor, notice, sample)
                if tell:
                    # The sequence is the threshold: one message per certificate and threshold.
                    details = {
                        "expires_at": notice.expires_at.isoformat(),
                        "days_left": round(notice.days_left, 1),
                        "threshold_days": notice.threshold_days,
                    }
                    await self._queue(session, tally, rule, monitor, alert_id, "cert_expiring",
                                      notice.threshold_days, sample, details)  # fmt: skip
            cert = outcome.state
        return RuleCheckState(latency, cert)

    async def _open_id(self, session: AsyncSession, open_key: str) -> uuid.UUID | None:
        found = await session.scalar(
            select(alerts.c.id).where(alerts.c.open_key == open_key, alerts.c.status == "open")
        )
        return found if isinstance(found, uuid.UUID) else None

    async def _open(
        self,
        session: AsyncSession,
        rule: Rule,
        monitor: MonitorView,
        suffix: str,
        problem: str,
        sample: CheckSample,
        error: str | None = None,
    ) -> uuid.UUID:
        """The open alert of (rule, monitor, problem), opened now if there is none."""
        open_key = f"{rule.rule_id}:{monitor.monitor_id}:{suffix}"
        existing = await self._open_id(session, open_key)
        if existing is not None:
            return existing
        alert_id = uuid.uuid4()
        await session.execute(
            alerts.insert().values(
                id=alert_id,
                tenant=monitor.tenant,
                rule_id=rule.rule_id,
                monitor_id=monitor.monitor_id,
                open_key=open_key,
                problem=problem,
                severity=rule.severity.value,
                status="open",
                opened_at=sample.at,
                error=error,
            )
        )
        return alert_id

    async def _cert_alert(
        self,
        session: AsyncSession,
        rule: Rule,
        monitor: MonitorView,
        notice: CertNotice,
        sample: CheckSample,
    ) -> uuid.UUID:
        error = f"certificate expires at {notice.expires_at.isoformat()}"
        return await self._open(session, rule, monitor, CERT_KEY, "cert_expiring", sample, error)

    async def _resolve(
        self,
        session: AsyncSession,
        rule: Rule,
        monitor: MonitorView,
        suffix: str,
        at: datetime,
    ) -> uuid.UUID | None:
        alert_id = await self._open_id(session, f"{rule.rule_id}:{monitor.monitor_id}:{suffix}")
        if alert_id is None:
            return None
        await session.execute(
            update(alerts)
            .where(alerts.c.id == alert_id, alerts.c.status == "open")
            .values(status="resolved", resolved_at=at, open_key=None)
        )
        return alert_id

    async def _queue(
        self,
        session: AsyncSession,
        tally: _Tally,
        rule: Rule,
        monitor: MonitorView,
        alert_id: uuid.UUID,
        kind: str,
        sequence: int,
        sample: CheckSample,
        details: dict[str, Any],
    ) -> None:
        context = {
            "monitor": monitor_context(monitor),
            "alert_id": str(alert_id),
            "rule": {"id": str(rule.rule_id), "name": rule.name},
            "changed_at": sample.at.isoformat(),
            "since": sample.at.isoformat(),
            "sequence": sequence,
            "link": self._link(monitor.monitor_id),
            **details,
        }
        tally.queued += await queue_deliveries(
            session, rule, monitor.tenant, monitor.monitor_id, alert_id, kind, sequence, context
        )


async def queue_deliveries(
    session: AsyncSession,
    rule: Rule,
    tenant: str,
    subject_id: uuid.UUID,
    alert_id: uuid.UUID,
    kind: str,
    sequence: int,
    context: dict[str, Any],
) -> int:
    """One message per channel of the rule, due now; the number newly queued (the unique key
    (alert, channel, kind, sequence) absorbs a second writer)."""
    now = utcnow()
    queued = 0
    for channel_id in rule.channel_ids:
        result = await session.execute(
            insert_ignoring_duplicates(session, deliveries).values(
                id=uuid.uuid4(),
                tenant=tenant,
                alert_id=alert_id,
                rule_id=rule.rule_id,
                monitor_id=subject_id,
                channel_id=channel_id,
                kind=kind,
                sequence=sequence,
                group_key=None,
                status="pending",
                due_at=now,
                attempts=0,
                context=context,
                created_at=now,
            )
        )
        if result.rowcount:  # type: ignore[attr-defined]
            QUEUED.labels(kind).inc()
            queued += 1
    return queued
