"""Reading and writing a monitor's state row, and turning a status decision into events.

Every change of state goes through `commit_decision`, in the caller's transaction, so the state
row and its `monitor.status_changed` / `incident.*` events commit (or vanish) together.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pingtower.common.events import (
    IncidentOpened,
    IncidentResolved,
    MonitorStatusChanged,
    Status,
    utcnow,
)
from pingtower.common.messaging.outbox import Outbox
from pingtower.pinger.domain.status import Decision, MonitorState, OpenIncident
from pingtower.pinger.store.tables import monitor_states, monitors


def initial_state_row(monitor_id: uuid.UUID, tenant: str, *, paused: bool) -> dict[str, Any]:
    now = utcnow()
    return {
        "monitor_id": monitor_id,
        "tenant": tenant,
        "status": (Status.PAUSED if paused else Status.UNKNOWN).value,
        "since": now,
        "consecutive_failures": 0,
        "consecutive_successes": 0,
        "changed_at": now,
    }


def state_from_row(row: Any) -> MonitorState:
    incident = None
    if row.incident_id is not None:
        incident = OpenIncident(
            row.incident_id,
            row.incident_started_at,
            row.incident_cause,
            row.incident_first_error,
        )
    return MonitorState(
        status=Status(row.status),
        since=row.since,
        consecutive_failures=row.consecutive_failures,
        consecutive_successes=row.consecutive_successes,
        incident=incident,
    )


async def load_state(session: AsyncSession, monitor_id: uuid.UUID) -> Any | None:
    """The state row, locked until the transaction ends (FOR UPDATE; SQLite's BEGIN IMMEDIATE
    already serialises writers), so replicas applying results to one monitor take turns."""
    query = select(monitor_states).where(monitor_states.c.monitor_id == monitor_id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return (await session.execute(query)).first()


async def load_states(
    session: AsyncSession, monitor_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Any]:
    """The state rows of many monitors in one query, locked like `load_state`. Locked in id
    order on PostgreSQL (the sort runs below the row locks), so two replicas' batches cannot
    deadlock."""
    query = (
        select(monitor_states)
        .where(monitor_states.c.monitor_id.in_(monitor_ids))
        .order_by(monitor_states.c.monitor_id)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return {row.monitor_id: row for row in (await session.execute(query)).all()}


# The monitor's columns the evaluator needs beside its state row, read in the same query.
_MONITOR_COLUMNS = (
    "tenant",
    "regions",
    "failure_quorum",
    "failures_before_down",
    "successes_before_up",
    "parent_id",
    "deleted_at",
)


class MonitorColumns(NamedTuple):
    """What the evaluator reads of a monitor's definition."""

    id: uuid.UUID
    tenant: str
    regions: list[str]
    failure_quorum: int | None
    failures_before_down: int
    successes_before_up: int
    parent_id: uuid.UUID | None
    deleted_at: datetime | None


async def load_states_with_monitors(
    session: AsyncSession, monitor_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[Any, Any]]:
    """Per monitor, its state row (locked like `load_states`) and its definition's columns
    (`monitor_tenant`, `monitor_regions`, ... and `monitor_id`), in one query instead of two:
    a statement costs the embedded evaluator more than the rows it reads. Only state rows
    are locked; a monitor without a state row is left out."""
    query = (
        select(
            monitor_states,
            *(monitors.c[name].label(f"monitor_{name}") for name in _MONITOR_COLUMNS),
        )
        .join(monitors, monitors.c.id == monitor_states.c.monitor_id)
        .where(monitor_states.c.monitor_id.in_(monitor_ids))
        .order_by(monitor_states.c.monitor_id)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(of=monitor_states)
    found: dict[uuid.UUID, tuple[Any, Any]] = {}
    for row in (await session.execute(query)).all():
        definition = MonitorColumns(
            row.monitor_id, *(getattr(row, f"monitor_{name}") for name in _MONITOR_COLUMNS)
        )
        found[row.monitor_id] = (row, definition)
    return found


def decision_values(decision: Decision) -> dict[str, Any]:
    """The state row's columns after `decision`."""
    state = decision.state
    incident = state.incident
    values: dict[str, Any] = {
        "status": state.status.value,
        "since": state.since,
        "consecutive_failures": state.consecutive_failures,
        "consecutive_successes": state.consecutive_successes,
        "incident_id": incident.id if incident else None,
        "incident_started_at": incident.started_at if incident else None,
        "incident_cause": incident.cause if incident else None,
        "incident_first_error": incident.first_error if incident else None,
    }
    if decision.transition is not None:
        # The scheduler polls this column to learn which monitors are PENDING.
        values["changed_at"] = utcnow()
    return values


async def update_states(session: AsyncSession, changes: Mapping[uuid.UUID, dict[str, Any]]) -> None:
    """Write many state rows' changed columns: one executemany per set of columns, instead of
    one statement built, cache-keyed and compiled per monitor (the evaluator's hot path)."""
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for monitor_id, values in changes.items():
        columns = tuple(sorted(values))
        by_columns[columns].append(
            {"b_monitor_id": monitor_id, **{f"b_{name}": values[name] for name in columns}}
        )
    for columns, rows in by_columns.items():
        statement = (
            update(monitor_states)
            .where(
                monitor_states.c.monitor_id
                == bindparam("b_monitor_id", type_=monitor_states.c.monitor_id.type)
            )
            .values(
                {
                    name: bindparam(f"b_{name}", type_=monitor_states.c[name].type)
                    for name in columns
                }
            )
        )
        await session.execute(statement, rows)


async def commit_decision(
    session: AsyncSession,
    outbox: Outbox,
    *,
    tenant: str,
    monitor_id: uuid.UUID,
    decision: Decision,
    check_id: uuid.UUID | None = None,
    error_kind: str | None = None,
    error_message: str | None = None,
    region: str | None = None,
    parent_incident_id: uuid.UUID | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    values = {**decision_values(decision), **(extra or {})}
    await session.execute(
        update(monitor_states).where(monitor_states.c.monitor_id == monitor_id).values(**values)
    )
    await add_decision_events(
        session,
        outbox,
        tenant=tenant,
        monitor_id=monitor_id,
        decision=decision,
        check_id=check_id,
        error_kind=error_kind,
        error_message=error_message,
        region=region,
        parent_incident_id=parent_incident_id,
    )


async def add_decision_events(
    session: AsyncSession,
    outbox: Outbox,
    *,
    tenant: str,
    monitor_id: uuid.UUID,
    decision: Decision,
    check_id: uuid.UUID | None = None,
    error_kind: str | None = None,
    error_message: str | None = None,
    region: str | None = None,
    parent_incident_id: uuid.UUID | None = None,
) -> None:
    """The `incident.*` and `monitor.status_changed` events of a decision, into the outbox."""
    incident = decision.state.incident
    if decision.opened is not None:
        opened = decision.opened
        await outbox.add(
            session,
            IncidentOpened(
                incident_id=opened.id,
                monitor_id=monitor_id,
                started_at=opened.started_at,
                cause=opened.cause,
                first_error=opened.first_error,
                region=region,
                parent_incident_id=parent_incident_id,
            ),
            tenant=tenant,
            occurred_at=opened.started_at,
        )
    if decision.transition is not None:
        transition = decision.transition
        related = decision.opened or decision.resolved or incident
        await outbox.add(
            session,
            MonitorStatusChanged(
                monitor_id=monitor_id,
                previous=transition.previous,
                current=transition.current,
                changed_at=transition.at,
                reason=transition.reason
                + ("; the parent monitor is down" if parent_incident_id else ""),
                check_id=check_id,
                incident_id=related.id if related else None,
                error_kind=error_kind,
                error_message=error_message,
            ),
            tenant=tenant,
            occurred_at=transition.at,
        )
    if decision.resolved is not None:
        resolved = decision.resolved
        resolved_at: datetime = decision.transition.at if decision.transition else utcnow()
        await outbox.add(
            session,
            IncidentResolved(
                incident_id=resolved.id,
                monitor_id=monitor_id,
                started_at=resolved.started_at,
                resolved_at=resolved_at,
            ),
            tenant=tenant,
            occurred_at=resolved_at,
        )
