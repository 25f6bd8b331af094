"""The public status page shows the workspace's public monitors as events describe them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from pingtower.common.events import (
    IncidentOpened,
    IncidentResolved,
    MonitorCreated,
    MonitorDeleted,
    MonitorStatusChanged,
    MonitorUpdated,
    Status,
)
from pingtower.web.domain.statuspage import StatusBoard, overall

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def created(monitor_id: uuid.UUID, name: str, tags: list[str], **extra: object) -> MonitorCreated:
    return MonitorCreated(
        monitor_id=monitor_id,
        name=name,
        type="http",
        target="https://x",
        tags=tags,
        interval_seconds=60,
        **extra,
    )


def changed(monitor_id: uuid.UUID, current: Status, at: datetime) -> MonitorStatusChanged:
    return MonitorStatusChanged(
        monitor_id=monitor_id, previous=Status.UNKNOWN, current=current, changed_at=at
    )


def test_only_monitors_flagged_public_are_shown() -> None:
    board = StatusBoard()
    grouped, flagged, tagged, private = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    board.apply("acme", created(grouped, "API", ["core"], public=True))
    board.apply("acme", created(flagged, "Web", [], public=True))
    # A tag is not a publication: only an admin sets the flag.
    board.apply("acme", created(tagged, "Tagged", ["public"]))
    board.apply("acme", created(private, "Intranet", ["core"]))

    shown = board.monitors("acme")

    assert [(m.name, m.group) for m in shown] == [("Web", "Services"), ("API", "core")]
    assert board.monitors("globex") == []


def test_status_changes_before_a_monitor_is_made_public_are_remembered() -> None:
    board = StatusBoard()
    monitor = uuid.uuid4()
    board.apply("acme", created(monitor, "API", []))
    board.apply("acme", changed(monitor, Status.DOWN, T0))

    board.apply(
        "acme",
        MonitorUpdated(
            monitor_id=monitor,
            name="API",
            type="http",
            target="https://x",
            tags=[],
            public=True,
            interval_seconds=60,
        ),
    )

    [shown] = board.monitors("acme")
    assert (shown.status, shown.since) == (Status.DOWN, T0)


def test_an_incident_is_current_until_resolved() -> None:
    board = StatusBoard()
    monitor, incident = uuid.uuid4(), uuid.uuid4()
    board.apply("acme", created(monitor, "API", [], public=True))
    board.apply(
        "acme",
        IncidentOpened(incident_id=incident, monitor_id=monitor, started_at=T0, cause="timeout"),
    )
    assert board.monitors("acme")[0].incident_cause == "timeout"

    end = T0 + timedelta(minutes=5)
    board.apply(
        "acme",
        IncidentResolved(incident_id=incident, monitor_id=monitor, started_at=T0, resolved_at=end),
    )

    assert board.monitors("acme")[0].incident_started_at is None
    assert board.monitors("acme")[0].incident_cause is None


def test_a_deleted_monitor_leaves_the_page() -> None:
    board = StatusBoard()
    monitor = uuid.uuid4()
    board.apply("acme", created(monitor, "API", [], public=True))
    board.apply("acme", MonitorDeleted(monitor_id=monitor))
    assert board.monitors("acme") == []


def test_the_headline_is_the_worst_status() -> None:
    board = StatusBoard()
    up, down = uuid.uuid4(), uuid.uuid4()
    assert overall(board.monitors("acme")) == "no_monitors"
    board.apply("acme", created(up, "A", [], public=True))
    board.apply("acme", changed(up, Status.UP, T0))
    assert overall(board.monitors("acme")) == "operational"
    board.apply("acme", created(down, "B", [], public=True))
    board.apply("acme", changed(down, Status.DOWN, T0))
    assert overall(board.monitors("acme")) == "major_outage"
