"""Rules and the monitors they match.

A rule selects monitors of its workspace by id or by tag; a rule with neither selects every
monitor of the workspace. Ids and tags add up: a monitor matches if its id is listed OR it carries
one of the tags.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class EventKind(StrEnum):
    """What a rule can ask to be told about."""

    DOWN = "down"
    RECOVERED = "recovered"
    DEGRADED = "degraded"
    # From check.completed: latency above the rule's threshold for N checks in a row.
    LATENCY = "latency"
    # From check.completed: the certificate expires within one of the rule's day thresholds.
    CERT_EXPIRING = "cert_expiring"
    # A heartbeat monitor down because its job did not check in on time (a rule may ask for
    # these alone; "down" covers them too).
    HEARTBEAT_LATE = "heartbeat_late"
    # From statistics' slo.burn_rate_exceeded, for SLOs of a matching monitor or tag.
    SLO = "slo"


# Kinds decided from check results rather than status changes.
CHECK_EVENTS = frozenset({EventKind.LATENCY, EventKind.CERT_EXPIRING})


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class MonitorView:
    """The Notificator's projection of one monitor (from monitor.created/updated)."""

    monitor_id: uuid.UUID
    tenant: str
    name: str
    target: str = ""
    type: str = ""
    tags: tuple[str, ...] = ()
    parent_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Rule:
    rule_id: uuid.UUID
    tenant: str
    name: str
    events: frozenset[EventKind]
    channel_ids: tuple[uuid.UUID, ...]
    monitor_ids: frozenset[uuid.UUID] = field(default_factory=frozenset)
    tags: frozenset[str] = field(default_factory=frozenset)
    delay_seconds: int = 0
    reminder_interval_seconds: int = 0
    reminder_count: int = 0
    severity: Severity = Severity.CRITICAL
    enabled: bool = True
    # Flap damping: more than `flap_threshold` changes within the window (0: off).
    flap_threshold: int = 0
    flap_window_seconds: int = 900
    # Escalation: tell these channels too when a DOWN is unacknowledged this long (0: off).
    escalation_channel_ids: tuple[uuid.UUID, ...] = ()
    escalate_after_seconds: int = 0
    # Grouping: wait this long and send the waiting messages of the rule as one (0: off).
    group_window_seconds: int = 0
    # Latency rule: above this many milliseconds for `latency_checks` successful checks in a row.
    latency_threshold_ms: float | None = None
    latency_checks: int = 3
    # Certificate rule: one message per certificate as it comes within each of these day counts.
    cert_expiry_days: tuple[int, ...] = ()

    @property
    def wants_check_results(self) -> bool:
        return self.enabled and bool(CHECK_EVENTS & self.events)

    @property
    def matches_all(self) -> bool:
        return not self.monitor_ids and not self.tags

    def matches(self, monitor: MonitorView) -> bool:
        if not self.enabled or monitor.tenant != self.tenant:
            return False
        if self.matches_all:
            return True
        return monitor.monitor_id in self.monitor_ids or bool(self.tags.intersection(monitor.tags))


def matching_rules(rules: Iterable[Rule], monitor: MonitorView) -> list[Rule]:
    return [rule for rule in rules if rule.matches(monitor)]


def wants(rule: Rule, kinds: Sequence[EventKind]) -> bool:
    return any(kind in rule.events for kind in kinds)


def asks_for(rule: Rule, event: EventKind, *, heartbeat_late: bool = False) -> bool:
    """Whether the rule wants to hear of `event`; a late heartbeat is a DOWN that a rule asking
    for "heartbeat_late" (and not "down") wants too."""
    if event in rule.events:
        return True
    return heartbeat_late and event is EventKind.DOWN and EventKind.HEARTBEAT_LATE in rule.events


def slo_selects(rule: Rule, monitor: MonitorView | None, tag: str | None) -> bool:
    """Whether a rule asking for "slo" events takes an SLO of `monitor` (known to us) or of
    `tag`: a rule for every monitor takes them all; otherwise the monitor must match the rule,
    or the SLO's tag be one of the rule's tags."""
    if not rule.enabled or EventKind.SLO not in rule.events:
        return False
    if monitor is not None and monitor.tenant != rule.tenant:
        return False
    if rule.matches_all:
        return True
    if monitor is not None and rule.matches(monitor):
        return True
    return tag is not None and tag in rule.tags
