"""What one status change decides: which alerts open or resolve, and which messages to queue.

The decision is a plain value; the consumer writes it to the database in the same transaction
that records the event in the inbox, and the delivery table's unique key (alert, channel, kind,
sequence) makes writing the same decision twice harmless.

Alert life: one alert per (rule, monitor) at a time. DOWN (or DEGRADED, if the rule asks for it)
opens it and queues the problem message, due after the rule's delay, plus its reminders; DEGRADED
then DOWN worsens it and queues the down message. A recovery resolves it; a channel is told about
the recovery only if it was (or is being) told about the problem, so a problem shorter than the
rule's delay produces no message at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from pingtower.notificator.domain.rules import EventKind, MonitorView, Rule, asks_for


class DeliveryKind(StrEnum):
    DOWN = "down"
    DEGRADED = "degraded"
    RECOVERED = "recovered"
    REMINDER = "reminder"
    FLAPPING = "flapping"
    ESCALATION = "escalation"


PROBLEM_KINDS = frozenset(
    {
        DeliveryKind.DOWN,
        DeliveryKind.DEGRADED,
        DeliveryKind.REMINDER,
        DeliveryKind.FLAPPING,
        DeliveryKind.ESCALATION,
    }
)
# Stopped by acknowledging the alert.
UNTIL_ACKNOWLEDGED = frozenset({DeliveryKind.REMINDER, DeliveryKind.ESCALATION})


def classify(current: str) -> EventKind | None:
    """The rule event a new status means; None for statuses that never notify by themselves
    (pending confirmation, unknown, paused, maintenance)."""
    if current == "down":
        return EventKind.DOWN
    if current == "degraded":
        return EventKind.DEGRADED
    if current == "up":
        return EventKind.RECOVERED
    return None


@dataclass(frozen=True)
class OpenAlert:
    alert_id: uuid.UUID
    rule_id: uuid.UUID
    problem: EventKind | None  # None: a flapping alert
    # Channels that were, or are being, told about the problem (a delivery was attempted).
    attempted_channels: frozenset[uuid.UUID] = frozenset()

    @property
    def flapping(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class AlertOpening:
    alert_id: uuid.UUID
    rule: Rule
    problem: EventKind | None  # None: a flapping alert
    quiet_after: datetime | None = None  # flapping: closes if nothing changes before this


@dataclass(frozen=True)
class PlannedDelivery:
    alert_id: uuid.UUID
    rule_id: uuid.UUID
    channel_id: uuid.UUID
    kind: DeliveryKind
    sequence: int
    due_at: datetime
    # Sent together with the other grouped messages of its rule and channel that are waiting.
    grouped: bool = False


@dataclass
class Decision:
    open: list[AlertOpening] = field(default_factory=list)
    worsen: list[uuid.UUID] = field(default_factory=list)
    resolve: list[uuid.UUID] = field(default_factory=list)
    deliveries: list[PlannedDelivery] = field(default_factory=list)
    quiet_after: dict[uuid.UUID, datetime] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.open or self.worsen or self.resolve or self.deliveries or self.quiet_after)


def _problem_deliveries(
    alert_id: uuid.UUID, rule: Rule, kind: DeliveryKind, at: datetime
) -> list[PlannedDelivery]:
    first_due = at + timedelta(seconds=rule.delay_seconds)
    grouped = rule.group_window_seconds > 0
    # Grouping waits one window, so that the changes of a whole host come out as one message.
    due = first_due + timedelta(seconds=rule.group_window_seconds)
    planned = [
        PlannedDelivery(alert_id, rule.rule_id, channel, kind, 0, due, grouped)
        for channel in rule.channel_ids
    ]
    if kind is DeliveryKind.DOWN and rule.escalate_after_seconds > 0:
        # Queued up front too; acknowledging or resolving the alert cancels it.
        escalate_at = first_due + timedelta(seconds=rule.escalate_after_seconds)
        planned.extend(
            PlannedDelivery(
                alert_id, rule.rule_id, channel, DeliveryKind.ESCALATION, 0, escalate_at
            )
            for channel in rule.escalation_channel_ids
        )
    if kind is DeliveryKind.DOWN and rule.reminder_interval_seconds > 0:
        # Reminders are queued up front; resolving or acknowledging cancels the unsent ones.
        for sequence in range(1, rule.reminder_count + 1):
            due = first_due + timedelta(seconds=rule.reminder_interval_seconds * sequence)
            planned.extend(
                PlannedDelivery(
                    alert_id, rule.rule_id, channel, DeliveryKind.REMINDER, sequence, due
                )
                for channel in rule.channel_ids
            )
    return planned


def is_flapping(rule: Rule, recent_changes: Sequence[datetime], at: datetime) -> bool:
    """More than the rule's threshold of status changes within its window, ending at `at`."""
    if rule.flap_threshold <= 0:
        return False
    since = at - timedelta(seconds=rule.flap_window_seconds)
    return sum(1 for changed in recent_changes if since < changed <= at) > rule.flap_threshold


def decide(
    event: EventKind,
    monitor: MonitorView,
    rules: Iterable[Rule],
    open_alerts: Mapping[uuid.UUID, OpenAlert],
    at: datetime,
    new_id: Callable[[], uuid.UUID] = uuid.uuid4,
    *,
    recent_changes: Sequence[datetime] = (),
    parent_down: bool = False,
    silenced: bool = False,
    heartbeat_late: bool = False,
) -> Decision:
    """`rules`: every rule of the monitor's workspace; `open_alerts`: this monitor's open alerts
    by rule id; `at`: when the status changed; `recent_changes`: when this monitor's status
    changed lately, this change included.

    `parent_down`: the monitor's parent is down, so this problem is a consequence and the
    parent's alert already tells the story: no new alert. `silenced`: a silence matches; the
    alert opens (so the recovery can close it) but nobody is told. `heartbeat_late`: this DOWN
    is a heartbeat that did not check in, which rules asking for "heartbeat_late" want too.

    Flap damping: while a rule sees the monitor flapping, its alert is a "flapping" alert that
    sent one notice and swallows every change; the first change after a quiet window closes it
    and is handled like any other.
    """
    decision = Decision()
    by_id = {rule.rule_id: rule for rule in rules if rule.tenant == monitor.tenant}
    tell = not silenced

    # Alerts whose rule is gone or disabled can only be closed.
    for rule_id, orphan in open_alerts.items():
        owner = by_id.get(rule_id)
        if (owner is None or not owner.enabled) and event is EventKind.RECOVERED:
            decision.resolve.append(orphan.alert_id)

    for rule in by_id.values():
        if not rule.enabled:
            continue
        alert: OpenAlert | None = open_alerts.get(rule.rule_id)
        if alert is None and not rule.matches(monitor):
            continue
        quiet_after = at + timedelta(seconds=rule.flap_window_seconds)
        if rule.matches(monitor) and is_flapping(rule, recent_changes, at):
            if alert is not None and alert.flapping:
                decision.quiet_after[alert.alert_id] = quiet_after
                continue
            if alert is not None:
                decision.resolve.append(alert.alert_id)  # superseded by the flapping notice
            alert_id = new_id()
            decision.open.append(AlertOpening(alert_id, rule, None, quiet_after))
            if tell:
                decision.deliveries.extend(
                    PlannedDelivery(alert_id, rule.rule_id, channel, DeliveryKind.FLAPPING, 0, at)
                    for channel in rule.channel_ids
                )
            continue
        if alert is not None and alert.flapping and event is not EventKind.RECOVERED:
            # Stable again, but in trouble: close the flapping alert and start afresh.
            decision.resolve.append(alert.alert_id)
            alert = None

        if event is EventKind.RECOVERED:
            if alert is None:
                continue
            decision.resolve.append(alert.alert_id)
            if EventKind.RECOVERED in rule.events:
                due = at + timedelta(seconds=rule.group_window_seconds)
                decision.deliveries.extend(
                    PlannedDelivery(
                        alert.alert_id,
                        rule.rule_id,
                        channel,
                        DeliveryKind.RECOVERED,
                        0,
                        due,
                        rule.group_window_seconds > 0,
                    )
                    for channel in sorted(alert.attempted_channels)
                )
            continue

        if (
            parent_down
            or not rule.matches(monitor)
            or not asks_for(rule, event, heartbeat_late=heartbeat_late)
        ):
            continue
        if alert is None:
            alert_id = new_id()
            decision.open.append(AlertOpening(alert_id, rule, event))
            if tell:
                decision.deliveries.extend(
                    _problem_deliveries(alert_id, rule, DeliveryKind(event.value), at)
                )
        elif alert.problem is EventKind.DEGRADED and event is EventKind.DOWN:
            decision.worsen.append(alert.alert_id)
            if tell:
                decision.deliveries.extend(
                    _problem_deliveries(alert.alert_id, rule, DeliveryKind.DOWN, at)
                )
        # Otherwise the alert is already open for this problem (or a worse one): nothing new.
    return decision
