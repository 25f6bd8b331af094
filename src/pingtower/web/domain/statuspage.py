"""The public status page's live view of a workspace, kept from events: which monitors are
public, their current status and open incident, pushed as they change.

A monitor is public when its event says so (the Pinger's admin-only `public` flag). The page's
history (90 daily uptimes, past incidents) and its title and logo come from the Statistics
service (`GET /api/v1/stats/public/{workspace}/status-page`), which keeps them in its database.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime

from pingtower.common.events import (
    Contract,
    IncidentOpened,
    IncidentResolved,
    MonitorCreated,
    MonitorDeleted,
    MonitorSnapshot,
    MonitorStatusChanged,
    MonitorUpdated,
    Status,
)


@dataclass(frozen=True, slots=True)  # one per public monitor, kept for the process's life
class PublicMonitor:
    monitor_id: uuid.UUID
    name: str
    group: str
    status: Status = Status.UNKNOWN
    since: datetime | None = None
    incident_started_at: datetime | None = None
    incident_cause: str | None = None


def is_public(snapshot: MonitorSnapshot) -> bool:
    return snapshot.public


def group_of(tags: list[str]) -> str:
    """The first tag (in order) names the group on the page."""
    ordered = sorted(tags)
    return ordered[0] if ordered else "Services"


@dataclass
class Workspace:
    monitors: dict[uuid.UUID, PublicMonitor] = field(default_factory=dict)
    # Status of monitors that are not (yet) public, so one made public later shows the truth.
    statuses: dict[uuid.UUID, tuple[Status, datetime]] = field(default_factory=dict)


class StatusBoard:
    """Every workspace's public view; `apply` takes events in any order of arrival."""

    def __init__(self) -> None:
        self._workspaces: dict[str, Workspace] = {}

    def apply(self, tenant: str, event: Contract) -> None:
        workspace = self._workspaces.setdefault(tenant, Workspace())
        monitors = workspace.monitors
        if isinstance(event, (MonitorCreated, MonitorUpdated)):
            if not is_public(event):
                monitors.pop(event.monitor_id, None)
                return
            old = monitors.get(event.monitor_id)
            status, since = workspace.statuses.get(event.monitor_id, (Status.UNKNOWN, None))
            base = old or PublicMonitor(event.monitor_id, event.name, "", status, since)
            monitors[event.monitor_id] = replace(base, name=event.name, group=group_of(event.tags))
        elif isinstance(event, MonitorDeleted):
            monitors.pop(event.monitor_id, None)
            workspace.statuses.pop(event.monitor_id, None)
        elif isinstance(event, MonitorStatusChanged):
            workspace.statuses[event.monitor_id] = (event.current, event.changed_at)
            found = monitors.get(event.monitor_id)
            if found is not None:
                monitors[event.monitor_id] = replace(
                    found, status=event.current, since=event.changed_at
                )
        elif isinstance(event, IncidentOpened):
            found = monitors.get(event.monitor_id)
            if found is not None:
                monitors[event.monitor_id] = replace(
                    found, incident_started_at=event.started_at, incident_cause=event.cause
                )
        elif isinstance(event, IncidentResolved):
            found = monitors.get(event.monitor_id)
            if found is not None:
                monitors[event.monitor_id] = replace(
                    found, incident_started_at=None, incident_cause=None
                )

    def monitors(self, tenant: str) -> list[PublicMonitor]:
        workspace = self._workspaces.get(tenant)
        if workspace is None:
            return []
        return sorted(workspace.monitors.values(), key=lambda m: (m.group, m.name.lower()))


def overall(monitors: list[PublicMonitor]) -> str:
    """The page's headline: the worst state among the public monitors."""
    statuses = {monitor.status for monitor in monitors}
    if Status.DOWN in statuses:
        return "major_outage"
    if Status.DEGRADED in statuses:
        return "degraded"
    if Status.MAINTENANCE in statuses:
        return "maintenance"
    if not monitors:
        return "no_monitors"
    return "operational"
