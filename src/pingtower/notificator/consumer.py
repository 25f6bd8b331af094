"""The `notificator.events` consumer: keeps the monitor projection and turns status changes into
alerts and queued deliveries, all inside the inbox's transaction. Check results (latency and
certificate rules, `check_results`) and SLO burn rates (`slo_alerts`) arrive on the same
subscription and are applied in the same transaction.

Writing the deliveries in that transaction is what makes a notification exactly-once to decide:
the event is recorded as processed if and only if its deliveries exist, and the deliveries'
unique key (alert, channel, kind, sequence) absorbs any second writer.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog
from prometheus_client import Counter
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pingtower.common.db import call_after_commit
from pingtower.common.events import (
    CheckCompleted,
    Envelope,
    IncidentOpened,
    MonitorCreated,
    MonitorDeleted,
    MonitorStatusChanged,
    MonitorUpdated,
    SloBurnRateExceeded,
    utcnow,
)
from pingtower.common.messaging.bus import BatchHandler
from pingtower.notificator.check_results import QUEUED, CheckRuleEffects
from pingtower.notificator.domain.decisions import (
    PROBLEM_KINDS,
    Decision,
    OpenAlert,
    classify,
    decide,
)
from pingtower.notificator.domain.rules import CHECK_EVENTS, EventKind, MonitorView, Rule
from pingtower.notificator.domain.silences import Silence, is_silenced
from pingtower.notificator.slo_alerts import apply_slo_event
from pingtower.notificator.store.projection import (
    BatchProjection,
    OpenStatusAlerts,
    ProjectedMonitor,
    new_monitor,
    placeholder,
)
from pingtower.notificator.store.rules import (
    active_silences,
    load_monitor,
    monitor_from_row,
    tenant_rules,
)
from pingtower.notificator.store.sql import insert_ignoring_duplicates
from pingtower.notificator.store.tables import alerts, channel_sends, deliveries, monitors, rules

log = structlog.get_logger(__name__)

CONSUMER = "notificator.events"
ROUTING_KEYS = ("monitor.created", "monitor.updated", "monitor.deleted",
                "monitor.status_changed", "incident.*", "check.completed",
                "slo.burn_rate_exceeded")  # fmt: skip
FLAPPING = "flapping"
# The open alerts that status changes open, worsen and resolve (not latency, certificate, SLO).
STATUS_PROBLEMS = ("down", "degraded", FLAPPING)
# Why a heartbeat monitor goes down when its job stays silent (pinger.domain.heartbeat).
HEARTBEAT_LATE_KINDS = frozenset({"heartbeat_missed", "heartbeat_run_too_long"})
# Status change times kept per monitor: enough for any flap window a rule may ask for.
RECENT_LIMIT = 100
RECENT_WINDOW = timedelta(days=1)
CHECK_RESULTS_SKIPPED = Counter(
    "pingtower_notificator_check_results_skipped_total",
    "check.completed events dropped before any transaction: no rule wants check results",
)
_CHECK_EVENT_VALUES = frozenset(kind.value for kind in CHECK_EVENTS)


async def any_rule_wants_check_results(sessions: async_sessionmaker[AsyncSession]) -> bool:
    """Whether some enabled rule of any workspace is a latency or certificate rule (what
    `Rule.wants_check_results` says), read now: a rule created a moment ago counts."""
    async with sessions() as session:
        events = (await session.scalars(select(rules.c.events).where(rules.c.enabled))).all()
    return any(_CHECK_EVENT_VALUES.intersection(kinds) for kinds in events)


def skip_unwanted_check_results(
    sessions: async_sessionmaker[AsyncSession], handler: BatchHandler
) -> BatchHandler:
    """Wrap the consumer's inbox handler so that check results nobody has a rule for cost one
    read instead of a write transaction (inbox claim, rules, commit) per batch: every check of
    every monitor arrives here, and most installations have no latency or certificate rule.

    A dropped result is not claimed in the inbox, so nothing about it is kept; the consumer
    would have done nothing with it either (`EventEffects` stops at the same test per
    workspace). A result arriving after a check rule exists takes the full path."""

    async def handle(batch: Sequence[Envelope]) -> None:
        results = sum(1 for envelope in batch if envelope.type == CheckCompleted.TYPE)
        if results and not await any_rule_wants_check_results(sessions):
            CHECK_RESULTS_SKIPPED.inc(results)
            batch = [envelope for envelope in batch if envelope.type != CheckCompleted.TYPE]
        if batch:
            await handler(batch)

    return handle


def definition_of(tenant: str, event: MonitorCreated | MonitorUpdated) -> dict[str, Any]:
    """The projection's columns a monitor's creation or update sets (`DEFINED`)."""
    return {
        "tenant": tenant,
        "name": event.name,
        "type": event.type,
        "target": event.target,
        "tags": list(event.tags),
        "parent_id": event.parent_id,
        "updated_at": utcnow(),
    }


def heartbeat_late(monitor: MonitorView, event: MonitorStatusChanged) -> bool:
    return monitor.type == "heartbeat" and event.error_kind in HEARTBEAT_LATE_KINDS


def recent_changes(stored: list[str], new: datetime | None) -> list[datetime]:
    """The monitor's recent change times, with `new` added, bounded in count and age."""
    times = [datetime.fromisoformat(t) for t in stored]
    if new is None:
        return times
    times.append(new)
    times.sort()
    return [t for t in times if t > new - RECENT_WINDOW][-RECENT_LIMIT:]


async def close_quiet_flapping_alerts(session: AsyncSession, now: datetime) -> int:
    """Resolve flapping alerts of monitors that stayed quiet for the window and are up now.

    A monitor quiet but down keeps its flapping alert until its next change (a known gap).
    """
    up_now = select(monitors.c.monitor_id).where(monitors.c.status == "up")
    quiet = (
        await session.scalars(
            select(alerts.c.id).where(
                alerts.c.status == "open",
                alerts.c.problem == FLAPPING,
                alerts.c.quiet_after < now,
                alerts.c.monitor_id.in_(up_now),
            )
        )
    ).all()
    if quiet:
        await session.execute(
            update(alerts)
            .where(alerts.c.id.in_(list(quiet)), alerts.c.status == "open")
            .values(status="resolved", resolved_at=now, open_key=None)
        )
    return len(quiet)


class _BatchCache:
    """What every event of one batch (one transaction, one consistent view) reads alike."""

    def __init__(self) -> None:
        self._rules: dict[str, list[Rule]] = {}
        self._silences: dict[str, list[Silence]] = {}

    async def rules(self, session: AsyncSession, tenant: str) -> list[Rule]:
        if tenant not in self._rules:
            self._rules[tenant] = await tenant_rules(session, tenant)
        return self._rules[tenant]

    async def silences(self, session: AsyncSession, tenant: str, at: datetime) -> list[Silence]:
        """Silences that may matter to events from a day before `at` up to now; each event
        then checks its own time against them."""
        if tenant not in self._silences:
            earliest = min(at, utcnow()) - RECENT_WINDOW
            self._silences[tenant] = await active_silences(
                session, tenant, earliest, until=utcnow()
            )
        return self._silences[tenant]


class EventEffects:
    def __init__(self, *, public_url: str | None, on_queued: Callable[[], None]) -> None:
        self.public_url = public_url.rstrip("/") if public_url else None
        self.on_queued = on_queued
        self.check_rules = CheckRuleEffects(public_url=self.public_url)

    async def __call__(self, session: AsyncSession, batch: Sequence[Envelope]) -> None:
        # Rules are read once per tenant and batch (one transaction, so one consistent view).
        cache = _BatchCache()
        events = [(envelope, envelope.parse()) for envelope in batch]
        # A definition's values are made once: the row inserted for a new monitor and the
        # event's application to it must agree (`updated_at` included).
        definitions = {
            position: definition_of(envelope.tenant, event)
            for position, (envelope, event) in enumerate(events)
            if isinstance(event, MonitorCreated | MonitorUpdated)
        }
        projection, open_alerts = await self._batch_monitors(session, events, definitions)
        results: dict[str, list[CheckCompleted]] = {}
        queued = 0
        for position, (envelope, event) in enumerate(events):
            if isinstance(event, CheckCompleted):
                # The bulk of the traffic: gathered, then applied per workspace at once.
                results.setdefault(envelope.tenant, []).append(event)
            elif isinstance(event, MonitorCreated | MonitorUpdated):
                await self._define_monitor(session, projection, event, definitions[position])
            elif isinstance(event, MonitorDeleted):
                await self._delete_monitor(session, event.monitor_id)
                projection.deleted(event.monitor_id)
                open_alerts.changed(event.monitor_id)
            elif isinstance(event, MonitorStatusChanged):
                await self._status_changed(
                    session, envelope.tenant, event, cache, projection, open_alerts
                )
            elif isinstance(event, IncidentOpened):
                await self._link_incident(session, envelope.tenant, event)
            elif isinstance(event, SloBurnRateExceeded):
                await projection.flush(session)  # it reads the monitor's row
                queued += await apply_slo_event(
                    session,
                    envelope,
                    event,
                    await cache.rules(session, envelope.tenant),
                    await cache.silences(session, envelope.tenant, envelope.occurred_at),
                    self.public_url,
                )
            # incident.resolved changes nothing: the recovery's status change closes the alert.
        await projection.flush(session)  # before check results read and lock the rows
        for tenant, tenant_results in results.items():
            rules = await cache.rules(session, tenant)
            if not any(rule.wants_check_results for rule in rules):
                continue  # the cheap path: nothing more to read or write
            earliest = min(r.finished_at for r in tenant_results)
            queued += await self.check_rules.apply(
                session, tenant, tenant_results, rules,
                await cache.silences(session, tenant, earliest),
            )  # fmt: skip
        if queued:
            call_after_commit(session, self.on_queued)

    async def _link_incident(
        self, session: AsyncSession, tenant: str, event: IncidentOpened
    ) -> None:
        """Tie the monitor's open down alerts to the Pinger's incident (when the status change
        carried none)."""
        await session.execute(
            update(alerts)
            .where(
                alerts.c.monitor_id == event.monitor_id,
                alerts.c.tenant == tenant,
                alerts.c.status == "open",
                alerts.c.problem.in_(STATUS_PROBLEMS),
                alerts.c.incident_id.is_(None),
            )
            .values(incident_id=event.incident_id)
        )

    async def _batch_monitors(
        self,
        session: AsyncSession,
        events: Sequence[tuple[Envelope, Any]],
        definitions: dict[int, dict[str, Any]],
    ) -> tuple[BatchProjection, OpenStatusAlerts]:
        """The projection rows of the batch's monitor events, read and locked, each missing one
        inserted as its monitor's first event would make it (a status change's placeholder),
        and the open status alerts of the monitors whose status change may decide something."""
        first: dict[uuid.UUID, ProjectedMonitor | None] = {}
        deciding: list[uuid.UUID] = []
        now = utcnow()
        for position, (envelope, event) in enumerate(events):
            if isinstance(event, MonitorCreated | MonitorUpdated):
                if event.monitor_id not in first:
                    first[event.monitor_id] = new_monitor(event.monitor_id, definitions[position])
            elif isinstance(event, MonitorStatusChanged):
                if event.monitor_id not in first:
                    first[event.monitor_id] = placeholder(event.monitor_id, envelope.tenant, now)
                if classify(event.current.value) is not None:
                    deciding.append(event.monitor_id)
            elif isinstance(event, MonitorDeleted):
                first.setdefault(event.monitor_id, None)  # locked, but no row made for it
        projection = BatchProjection()
        await projection.load(session, first)
        # After the rows' locks: another replica changes a monitor's alerts only under them.
        open_alerts = OpenStatusAlerts(STATUS_PROBLEMS)
        await open_alerts.load(session, deciding)
        return projection, open_alerts

    async def _define_monitor(
        self,
        session: AsyncSession,
        projection: BatchProjection,
        event: MonitorCreated | MonitorUpdated,
        definition: dict[str, Any],
    ) -> None:
        row = projection.get(event.monitor_id)
        if row is None:  # deleted earlier in this batch (`_batch_monitors` made the others)
            await projection.insert(session, [new_monitor(event.monitor_id, definition)])
        else:
            row.define(definition)

    async def _delete_monitor(self, session: AsyncSession, monitor_id: uuid.UUID) -> None:
        open_ids = list(
            (
                await session.scalars(
                    select(alerts.c.id).where(
                        alerts.c.monitor_id == monitor_id, alerts.c.status == "open"
                    )
                )
            ).all()
        )
        await self._resolve(session, open_ids, utcnow())
        await session.execute(delete(monitors).where(monitors.c.monitor_id == monitor_id))

    async def _status_changed(
        self,
        session: AsyncSession,
        tenant: str,
        event: MonitorStatusChanged,
        cache: _BatchCache,
        projection: BatchProjection,
        status_alerts: OpenStatusAlerts,
    ) -> None:
        row = projection.get(event.monitor_id)
        if row is None:  # deleted earlier in this batch (`_batch_monitors` made the others)
            await projection.insert(session, [placeholder(event.monitor_id, tenant, utcnow())])
            row = projection.get(event.monitor_id)
            assert row is not None
        if row.tenant != tenant:
            log.warning("status event for another workspace's monitor dropped",
                        monitor_id=str(event.monitor_id))  # fmt: skip
            return
        if row.status_changed_at is not None and event.changed_at < row.status_changed_at:
            return  # older than what we already applied: out of order, obsolete
        kind = classify(event.current.value)
        # Written by the batch's `flush`, with the rest of the batch's changed rows
        row.status = event.current.value
        row.status_changed_at = event.changed_at
        if kind is None:
            return  # its recent changes stay as they are
        recent = recent_changes(row.recent_changes, event.changed_at)
        row.recent_changes = [t.isoformat() for t in recent]
        monitor = monitor_from_row(row)
        open_rows = await status_alerts.of(session, event.monitor_id)
        attempted = await self._attempted_channels(session, [r.id for r in open_rows])
        open_alerts = {
            r.rule_id: OpenAlert(
                r.id,
                r.rule_id,
                None if r.problem == FLAPPING else EventKind(r.problem),
                attempted.get(r.id, frozenset()),
            )
            for r in open_rows
        }
        rules = await cache.rules(session, tenant)
        parent_down = False
        if monitor.parent_id is not None:
            # As this batch left it, if one of its events concerns the parent
            parent: Any = (
                projection.get(monitor.parent_id)
                if monitor.parent_id in projection
                else await load_monitor(session, monitor.parent_id)
            )
            parent_down = parent is not None and parent.status == "down"
        silenced = is_silenced(
            await cache.silences(session, tenant, event.changed_at), monitor, event.changed_at
        )
        decision = decide(
            kind,
            monitor,
            rules,
            open_alerts,
            event.changed_at,
            recent_changes=recent,
            parent_down=parent_down,
            silenced=silenced,
            heartbeat_late=heartbeat_late(monitor, event),
        )
        if decision.empty:
            return
        status_alerts.changed(event.monitor_id)
        opened_at = {r.id: r.opened_at for r in open_rows}
        rule_names = {rule.rule_id: rule.name for rule in rules}
        await self._apply(session, decision, monitor, event, opened_at, rule_names)

    async def _attempted_channels(
        self, session: AsyncSession, alert_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, frozenset[uuid.UUID]]:
        if not alert_ids:
            return {}
        rows = (
            await session.execute(
                select(deliveries.c.alert_id, deliveries.c.channel_id).where(
                    deliveries.c.alert_id.in_(alert_ids),
                    deliveries.c.kind.in_([k.value for k in PROBLEM_KINDS]),
                    deliveries.c.attempts > 0,
                    deliveries.c.status != "cancelled",
                )
            )
        ).all()
        found: dict[uuid.UUID, set[uuid.UUID]] = {}
        for alert_id, channel_id in rows:
            found.setdefault(alert_id, set()).add(channel_id)
        return {alert_id: frozenset(channels) for alert_id, channels in found.items()}

    async def _apply(
        self,
        session: AsyncSession,
        decision: Decision,
        monitor: MonitorView,
        event: MonitorStatusChanged,
        opened_at: dict[uuid.UUID, datetime],
        rule_names: dict[uuid.UUID, str],
    ) -> None:
        now = utcnow()
        error = event.error_message or event.reason or None
        # Resolve first: a new alert for the same (rule, monitor) reuses the open key.
        await self._resolve(session, decision.resolve, event.changed_at)
        for opening in decision.open:
            await session.execute(
                alerts.insert().values(
                    id=opening.alert_id,
                    tenant=monitor.tenant,
                    rule_id=opening.rule.rule_id,
                    monitor_id=monitor.monitor_id,
                    open_key=f"{opening.rule.rule_id}:{monitor.monitor_id}",
                    problem=opening.problem.value if opening.problem else FLAPPING,
                    quiet_after=opening.quiet_after,
                    severity=opening.rule.severity.value,
                    status="open",
                    opened_at=event.changed_at,
                    error=error,
                    incident_id=event.incident_id,
                )
            )
            opened_at[opening.alert_id] = event.changed_at
        if decision.worsen:
            await session.execute(
                update(alerts)
                .where(alerts.c.id.in_(decision.worsen))
                .values(problem=EventKind.DOWN.value, error=error)
            )
        for alert_id, quiet_after in decision.quiet_after.items():
            await session.execute(
                update(alerts).where(alerts.c.id == alert_id).values(quiet_after=quiet_after)
            )
        for planned in decision.deliveries:
            since = opened_at.get(planned.alert_id, event.changed_at)
            context = {
                "monitor": {
                    "id": str(monitor.monitor_id),
                    "name": monitor.name,
                    "target": monitor.target,
                    "type": monitor.type,
                    "tags": list(monitor.tags),
                },
                "alert_id": str(planned.alert_id),
                "rule": {"id": str(planned.rule_id), "name": rule_names.get(planned.rule_id, "")},
                "status": event.current.value,
                "previous": event.previous.value,
                "since": since.isoformat(),
                "changed_at": event.changed_at.isoformat(),
                "down_for_seconds": (event.changed_at - since).total_seconds()
                if planned.kind.value == "recovered"
                else None,
                "error": error,
                "incident_id": str(event.incident_id) if event.incident_id else None,
                "error_kind": event.error_kind,
                # A heartbeat monitor down because its job went silent: "late", not "down".
                "heartbeat_late": heartbeat_late(monitor, event),
                "sequence": planned.sequence,
                "link": f"{self.public_url}/monitors/{monitor.monitor_id}"
                if self.public_url
                else None,
            }
            result = await session.execute(
                insert_ignoring_duplicates(session, deliveries).values(
                    id=uuid.uuid4(),
                    tenant=monitor.tenant,
                    alert_id=planned.alert_id,
                    rule_id=planned.rule_id,
                    monitor_id=monitor.monitor_id,
                    channel_id=planned.channel_id,
                    kind=planned.kind.value,
                    sequence=planned.sequence,
                    group_key=str(planned.rule_id) if planned.grouped else None,
                    status="pending",
                    due_at=planned.due_at,
                    attempts=0,
                    context=context,
                    created_at=now,
                )
            )
            if result.rowcount:  # type: ignore[attr-defined]
                QUEUED.labels(planned.kind.value).inc()
        if decision.deliveries:
            call_after_commit(session, self.on_queued)

    async def _resolve(
        self, session: AsyncSession, alert_ids: list[uuid.UUID], at: datetime
    ) -> None:
        if not alert_ids:
            return
        await session.execute(
            update(alerts)
            .where(alerts.c.id.in_(alert_ids), alerts.c.status == "open")
            .values(status="resolved", resolved_at=at, open_key=None)
        )
        # A problem message not sent yet is obsolete once the problem is over.
        await cancel_pending(session, alert_ids, [k.value for k in PROBLEM_KINDS], "resolved")


async def cancel_pending(
    session: AsyncSession, alert_ids: list[uuid.UUID], kinds: list[str], reason: str
) -> None:
    await session.execute(
        update(deliveries)
        .where(
            deliveries.c.alert_id.in_(alert_ids),
            deliveries.c.kind.in_(kinds),
            deliveries.c.status == "pending",
        )
        .values(status="cancelled", last_error=f"cancelled: alert {reason}", finished_at=utcnow())
    )


async def prune_channel_sends(session: AsyncSession, now: datetime) -> None:
    """The rate limit looks one minute back; an hour of history is plenty."""
    await session.execute(
        delete(channel_sends).where(channel_sends.c.sent_at < now - timedelta(hours=1))
    )
