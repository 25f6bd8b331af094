"""Reading and writing a monitor's state row, and turning a status decision into events.

Every change of state goes through `commit_decision`, in the caller's transaction, so the state
row and its `monitor.status_changed` / `incident.*` events commit (or vanish) together.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple, cast

from sqlalchemy import Select, bindparam, exists, func, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from pingtower.common.events import (
    Contract,
    IncidentOpened,
    IncidentResolved,
    MonitorStatusChanged,
    Status,
    utcnow,
)
from pingtower.common.messaging.outbox import Outbox
from pingtower.common.sqlite_driver import OneTripConnection
from pingtower.pinger.domain.status import Decision, MonitorState, OpenIncident
from pingtower.pinger.store.maintenance import TenantWindows, window_from_row
from pingtower.pinger.store.tables import (
    check_results,
    maintenance_windows,
    monitor_states,
    monitors,
)


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


# `Status(text)` runs the Enum machinery's call for each state row read; a lookup does not.
_STATUS_OF = {status.value: status for status in Status}


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
        status=_STATUS_OF.get(row.status) or Status(row.status),
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


class StateColumns(NamedTuple):
    """What the evaluator reads of a monitor's state row (the columns it may write, and no
    others: each column read is a value converted per row). A tuple: made for every row a
    batch reads, at a third of a dataclass's cost."""

    monitor_id: uuid.UUID
    status: str
    since: datetime | None
    consecutive_failures: int
    consecutive_successes: int
    incident_id: uuid.UUID | None
    incident_started_at: datetime | None
    incident_cause: str | None
    incident_first_error: str | None
    last_scheduled_at: datetime | None
    round_scheduled_at: datetime | None
    round_outcomes: dict[str, str] | None
    last_result_id: int | None
    last_stored_result_id: int | None


class MonitorColumns(NamedTuple):
    """What the evaluator reads of a monitor's definition."""

    id: uuid.UUID
    tenant: str
    region_count: int  # of its regions (the list itself is not needed)
    failure_quorum: int | None
    failures_before_down: int
    successes_before_up: int
    parent_id: uuid.UUID | None
    deleted: bool  # a tombstone (its time is not needed)


_STATE_COLUMNS = StateColumns._fields
_READ_COLUMNS = frozenset(_STATE_COLUMNS)
# Read beside each state row. The region count and the tombstone flag are computed in the
# query: an integer and a boolean are cheaper to read than a JSON list and a time.
_MONITOR_SELECTED = (
    monitors.c.tenant,
    func.json_array_length(monitors.c.regions),
    monitors.c.failure_quorum,
    monitors.c.failures_before_down,
    monitors.c.successes_before_up,
    monitors.c.parent_id,
    monitors.c.deleted_at.is_not(None),
)


@dataclass(slots=True)
class LoadedStates:
    """What `load_states_with_monitors` read for a batch."""

    # Per monitor: its state row and its definition's columns.
    states: dict[uuid.UUID, tuple[StateColumns, MonitorColumns]]
    # The workspaces among them with at least one maintenance window (most have none, and
    # reading windows is a statement per workspace).
    tenants_with_windows: set[str]
    # SQLite only: the largest id in check_results, read under the transaction's write lock,
    # so the caller may number the results it stores itself (`None` also if there is none).
    last_result_id: int | None


@lru_cache(maxsize=2)
def _states_with_monitors_query(*, sqlite: bool) -> Select[Any]:
    """Built once: building a statement and its IN list anew cost a tenth of each load."""
    has_windows = (
        exists()
        .where(maintenance_windows.c.tenant == monitors.c.tenant)
        .correlate(monitors)
        .label("has_windows")
    )
    columns: list[Any] = [
        *(monitor_states.c[name] for name in _STATE_COLUMNS),
        *_MONITOR_SELECTED,
        has_windows,
    ]
    if sqlite:
        # Evaluated once per statement (it is not correlated), from the end of the id index.
        columns.append(select(func.max(check_results.c.id)).scalar_subquery())
    query = (
        select(*columns)
        .join(monitors, monitors.c.id == monitor_states.c.monitor_id)
        .where(monitor_states.c.monitor_id.in_(bindparam("ids", expanding=True)))
        .order_by(monitor_states.c.monitor_id)
    )
    return query if sqlite else query.with_for_update(of=monitor_states)


async def load_states_with_monitors(
    session: AsyncSession, monitor_ids: Sequence[uuid.UUID]
) -> LoadedStates:
    """Per monitor, its state row (locked like `load_states`) and its definition's columns,
    in one query: a statement costs the embedded evaluator more than the rows it reads. The
    same query says which workspaces have maintenance windows and, on SQLite, the last result
    id. Only state rows are locked; a monitor without a state row is left out."""
    if session.get_bind().dialect.name == "sqlite":
        return await _load_plain(session, monitor_ids)
    return await load_states_with_monitors_generic(session, monitor_ids)


async def load_states_with_monitors_generic(
    session: AsyncSession, monitor_ids: Sequence[uuid.UUID]
) -> LoadedStates:
    """`load_states_with_monitors` through SQLAlchemy's typed results, on either database (the
    reference the SQLite reader is tested against)."""
    sqlite = session.get_bind().dialect.name == "sqlite"
    query = _states_with_monitors_query(sqlite=sqlite)
    loaded = LoadedStates({}, set(), None)
    states = len(_STATE_COLUMNS)
    definitions = states + len(_MONITOR_SELECTED)
    for row in (await session.execute(query, {"ids": monitor_ids})).all():
        values = tuple(row)
        state = StateColumns(*values[:states])
        monitor = MonitorColumns(state.monitor_id, *values[states:definitions])
        loaded.states[state.monitor_id] = (state, monitor)
        if values[definitions]:
            loaded.tenants_with_windows.add(monitor.tenant)
        if sqlite:
            loaded.last_result_id = values[definitions + 1]
    return loaded


@lru_cache(maxsize=1)
def _plain_query() -> str:
    """The SQLite form of the states' query, its ids read from one JSON array of hex ids (as
    `Uuid` stores them): one statement text whatever the batch size."""
    compiled = str(_states_with_monitors_query(sqlite=True).compile(dialect=sqlite.dialect()))
    if compiled.count(_IDS_PLACEHOLDER) != 1:
        raise RuntimeError("the states' query no longer has one expanding `ids` parameter")
    return compiled.replace(_IDS_PLACEHOLDER, "SELECT value FROM json_each(?)")


_IDS_PLACEHOLDER = "__[POSTCOMPILE_ids]"


def _utc_time(stored: str | None) -> datetime | None:
    """A stored `UtcDateTime` as SQLAlchemy reads it on SQLite (`DATETIME`'s `fromisoformat`,
    then `UtcDateTime.process_result_value`)."""
    if stored is None:
        return None
    found = datetime.fromisoformat(stored)
    return found.replace(tzinfo=UTC) if found.tzinfo is None else found.astimezone(UTC)


def _uuid(stored: str | None) -> uuid.UUID | None:
    return None if stored is None else uuid.UUID(stored)


# A statement and its plain parameters, run on SQLite before the states' query, in its trip
Before = tuple[str, Sequence[Any]]


async def load_states_after(
    driver: OneTripConnection, before: Before, monitor_ids: Sequence[uuid.UUID]
) -> tuple[list[Any], LoadedStates]:
    """On SQLite, in a transaction on `driver`: `before`'s rows (which results are stored
    already), then `load_states_with_monitors`, in one trip to SQLite's thread, where they
    were a trip each."""
    by_hex = {monitor_id.hex: monitor_id for monitor_id in monitor_ids}
    db = driver._conn
    states_query, ids = _plain_query(), json.dumps(list(by_hex))

    def run() -> tuple[list[Any], list[tuple[Any, ...]]]:
        cursor = db.cursor()
        try:
            first = cursor.execute(*before).fetchall()
            return first, cursor.execute(states_query, (ids,)).fetchall()
        finally:
            cursor.close()

    first, rows = await driver.run(run)
    return first, _loaded(rows, by_hex)


class _WindowRow(NamedTuple):
    """What `window_from_row` reads of a maintenance window's row."""

    kind: str
    starts_at: datetime | None
    ends_at: datetime | None
    days: list[int] | None
    start_time: str | None
    duration_minutes: int | None
    cron: str | None
    timezone: str


_WINDOWS_QUERY = (
    "SELECT monitor_ids, kind, starts_at, ends_at, days, start_time, duration_minutes, cron,"
    " timezone FROM maintenance_windows WHERE tenant = ?"
)


async def plain_tenant_windows(driver: OneTripConnection, tenant: str) -> TenantWindows:
    """`maintenance.tenant_windows` on SQLite's driver connection, each value converted as its
    column's type converts it (a test compares the two)."""
    db = driver._conn

    def run() -> list[Any]:
        return db.execute(_WINDOWS_QUERY, (tenant,)).fetchall()

    windows: TenantWindows = []
    for monitor_ids, kind, starts, ends, days, start_time, minutes, cron, zone in await driver.run(
        run
    ):
        row = _WindowRow(
            kind,
            _utc_time(starts),
            _utc_time(ends),
            None if days is None else json.loads(days),
            start_time,
            minutes,
            cron,
            zone,
        )
        windows.append((frozenset(json.loads(monitor_ids)), window_from_row(row)))
    return windows


async def plain_open_incident(driver: OneTripConnection, monitor_id: uuid.UUID) -> uuid.UUID | None:
    """On SQLite's driver connection: the monitor's open incident if it is DOWN."""
    db = driver._conn

    def run() -> list[Any]:
        return db.execute(
            "SELECT incident_id FROM monitor_states WHERE monitor_id = ? AND status = ?",
            (monitor_id.hex, Status.DOWN.value),
        ).fetchall()

    rows = await driver.run(run)
    return _uuid(rows[0][0]) if rows else None


async def _load_plain(session: AsyncSession, monitor_ids: Sequence[uuid.UUID]) -> LoadedStates:
    """`load_states_with_monitors` on SQLite from the driver's plain rows, each value converted
    here as its column's type would convert it (a test compares the two readers). SQLAlchemy's
    result processing (a Row per row, a processor call per value through `TypeDecorator`) was
    about half of the evaluator's reading, and the reading a third of `Evaluator.apply`
    (bench/README.md, performance round 6). The monitor ids come back as the hex given."""
    by_hex = {monitor_id.hex: monitor_id for monitor_id in monitor_ids}
    connection = await session.connection()
    found = await connection.exec_driver_sql(_plain_query(), (json.dumps(list(by_hex)),))
    return _loaded(cast(list[tuple[Any, ...]], found.all()), by_hex)


def _loaded(rows: list[tuple[Any, ...]], by_hex: dict[str, uuid.UUID]) -> LoadedStates:
    """The plain rows of `_plain_query` as `LoadedStates`."""
    loaded = LoadedStates({}, set(), None)
    for (
        monitor_hex,
        status,
        since,
        consecutive_failures,
        consecutive_successes,
        incident_id,
        incident_started_at,
        incident_cause,
        incident_first_error,
        last_scheduled_at,
        round_scheduled_at,
        round_outcomes,
        last_result_id,
        last_stored_result_id,
        tenant,
        region_count,
        failure_quorum,
        failures_before_down,
        successes_before_up,
        parent_id,
        deleted,
        has_windows,
        max_result_id,
    ) in rows:
        monitor_id = by_hex.get(monitor_hex) or uuid.UUID(monitor_hex)
        state = StateColumns(
            monitor_id,
            status,
            _utc_time(since),
            consecutive_failures,
            consecutive_successes,
            _uuid(incident_id),
            _utc_time(incident_started_at),
            incident_cause,
            incident_first_error,
            _utc_time(last_scheduled_at),
            _utc_time(round_scheduled_at),
            None if round_outcomes is None else json.loads(round_outcomes),
            last_result_id,
            last_stored_result_id,
        )
        monitor = MonitorColumns(
            monitor_id,
            tenant,
            region_count,
            failure_quorum,
            failures_before_down,
            successes_before_up,
            _uuid(parent_id),
            bool(deleted),
        )
        loaded.states[monitor_id] = (state, monitor)
        if has_windows:
            loaded.tenants_with_windows.add(tenant)
        loaded.last_result_id = max_result_id
    return loaded


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


def changed_columns(row: StateColumns, values: Mapping[str, Any]) -> dict[str, Any]:
    """Of a state row's new `values`, those that differ from the row as read (a column not
    read, `changed_at`, counts as changed). A monitor that stays UP changes two or three
    columns, and each column left out is a value less to convert and write."""
    return {
        name: value
        for name, value in values.items()
        if name not in _READ_COLUMNS or getattr(row, name) != value
    }


def changes_by_columns(
    changes: Mapping[uuid.UUID, dict[str, Any]],
) -> dict[tuple[str, ...], list[tuple[Any, ...]]]:
    """Changed state rows grouped by the columns they change: per group, each row's values
    in the order of the columns, then its monitor id (one executemany per group)."""
    by_columns: dict[tuple[str, ...], list[tuple[Any, ...]]] = defaultdict(list)
    for monitor_id, values in changes.items():
        columns = tuple(sorted(values))
        by_columns[columns].append((*(values[name] for name in columns), monitor_id))
    return by_columns


async def update_states(session: AsyncSession, changes: Mapping[uuid.UUID, dict[str, Any]]) -> None:
    """Write many state rows' changed columns: one executemany per set of columns, instead of
    one statement built, cache-keyed and compiled per monitor (the evaluator's hot path)."""
    for columns, rows in changes_by_columns(changes).items():
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
        names = [f"b_{name}" for name in columns] + ["b_monitor_id"]
        await session.execute(statement, [dict(zip(names, row, strict=True)) for row in rows])


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
    for event, occurred_at in decision_events(
        monitor_id=monitor_id,
        decision=decision,
        check_id=check_id,
        error_kind=error_kind,
        error_message=error_message,
        region=region,
        parent_incident_id=parent_incident_id,
    ):
        await outbox.add(session, event, tenant=tenant, occurred_at=occurred_at)


def decision_events(
    *,
    monitor_id: uuid.UUID,
    decision: Decision,
    check_id: uuid.UUID | None = None,
    error_kind: str | None = None,
    error_message: str | None = None,
    region: str | None = None,
    parent_incident_id: uuid.UUID | None = None,
) -> list[tuple[Contract, datetime]]:
    """The `incident.*` and `monitor.status_changed` events of a decision, each with the time
    it occurred, in the order they go into the outbox."""
    events: list[tuple[Contract, datetime]] = []
    incident = decision.state.incident
    if decision.opened is not None:
        opened = decision.opened
        events.append(
            (
                IncidentOpened(
                    incident_id=opened.id,
                    monitor_id=monitor_id,
                    started_at=opened.started_at,
                    cause=opened.cause,
                    first_error=opened.first_error,
                    region=region,
                    parent_incident_id=parent_incident_id,
                ),
                opened.started_at,
            )
        )
    if decision.transition is not None:
        transition = decision.transition
        related = decision.opened or decision.resolved or incident
        events.append(
            (
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
                transition.at,
            )
        )
    if decision.resolved is not None:
        resolved = decision.resolved
        resolved_at: datetime = decision.transition.at if decision.transition else utcnow()
        events.append(
            (
                IncidentResolved(
                    incident_id=resolved.id,
                    monitor_id=monitor_id,
                    started_at=resolved.started_at,
                    resolved_at=resolved_at,
                ),
                resolved_at,
            )
        )
    return events
