"""The ingest effect: applies a batch of events inside the inbox's transaction.

Every step is idempotent on its own as well (a result is keyed by its check id, an incident by
its id, a status change by its time), so even the same fact carried by two different messages
lands once. Rollup cells of a batch are summed in memory first, then added to the stored cells
(`merge_cells`: new cells inserted, existing ones read under a row lock, added and written
back), so concurrent consumers and late results both add up correctly. Only minute cells are
written for fresh results; compaction folds them into hour and day cells (store/compaction.py).
On SQLite (the embedded mode) results and cells are written straight on the connection
(store/sqlite_ingest.py), a batch of results of known monitors in one trip to its thread.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

import structlog
from prometheus_client import Counter
from sqlalchemy import (
    Uuid,
    and_,
    any_,
    bindparam,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from pingtower.common.events import (
    CheckCompleted,
    Contract,
    Envelope,
    IncidentOpened,
    IncidentResolved,
    MonitorCreated,
    MonitorDeleted,
    MonitorSnapshot,
    MonitorStatusChanged,
    MonitorUpdated,
)
from pingtower.statistics.domain.histogram import Histogram
from pingtower.statistics.domain.rollups import EPOCH, Cell, CellKey, summed_cells
from pingtower.statistics.store import sqlite_ingest
from pingtower.statistics.store.dialect import is_postgres, upsert
from pingtower.statistics.store.monitor_slos import sync_monitor_slo
from pingtower.statistics.store.tables import (
    incidents,
    monitors,
    rollups,
    status_intervals,
    watermarks,
)
from pingtower.statistics.store.watermark import NAME as WATERMARK_NAME
from pingtower.statistics.store.watermark import folded_until

log = structlog.get_logger(__name__)

INGESTED = Counter(
    "pingtower_statistics_ingested_total", "Events applied by the Statistics ingest", ["type"]
)
ROUTING_KEYS = (
    "check.completed",
    "monitor.status_changed",
    "incident.opened",
    "incident.resolved",
    "monitor.created",
    "monitor.updated",
    "monitor.deleted",
)

__all__ = ["ROUTING_KEYS", "CellKey", "cell_from_row", "ingest", "merge_cells"]


async def ingest(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
    # One pass sorts the batch (it runs per message, so each step per message counts)
    definitions: list[tuple[Envelope, Contract]] = []
    facts: list[tuple[Envelope, Contract]] = []
    types: dict[str, int] = {}
    for envelope in envelopes:
        event = envelope.parse()
        types[event.TYPE] = types.get(event.TYPE, 0) + 1
        (definitions if isinstance(event, _DEFINITIONS) else facts).append((envelope, event))
    await _apply_definitions(session, definitions)
    if (
        facts
        and not is_postgres(session)
        and all(isinstance(c, CheckCompleted) for _, c in facts)
        and await sqlite_ingest.store_results_of_known_monitors(session, _unique_results(facts))
    ):
        # The embedded mode's usual batch, in one trip to SQLite's thread
        _count(types)
        return

    timeline = any(isinstance(c, MonitorStatusChanged) for _, c in facts)
    owners, folded = await _owners(
        session, {(e.tenant, _monitor_of(c)) for e, c in facts}, timeline
    )
    results: list[tuple[Envelope, Contract]] = []
    changes: list[tuple[Envelope, Contract]] = []
    incidents_: list[tuple[Envelope, Contract]] = []
    for envelope, event in facts:
        if owners[_monitor_of(event)] != envelope.tenant:
            log.warning(
                "event dropped: monitor belongs to another workspace",
                message_id=str(envelope.id),
                monitor_id=str(_monitor_of(event)),
            )
        elif isinstance(event, CheckCompleted):
            results.append((envelope, event))
        elif isinstance(event, MonitorStatusChanged):
            changes.append((envelope, event))
        elif isinstance(event, IncidentOpened | IncidentResolved):
            incidents_.append((envelope, event))
    await _apply_results(session, results, folded)
    await _apply_status_changes(session, changes)
    await _apply_incidents(session, incidents_)
    _count(types)


_DEFINITIONS = (MonitorSnapshot, MonitorDeleted)


def _count(types: dict[str, int]) -> None:
    for type_, count in types.items():
        INGESTED.labels(type_).inc(count)


def _unique_results(
    events: Iterable[tuple[Envelope, Contract]],
) -> list[tuple[str, CheckCompleted]]:
    """The results with their workspace, each once: a result is keyed by its check id and
    finish time, and a copy in the same batch (a redelivery) must not reach the cells twice."""
    # keyed by the id's int: a UUID's hash is computed in Python at every lookup
    by_check: dict[tuple[int, datetime], tuple[str, CheckCompleted]] = {}
    for envelope, event in events:
        assert isinstance(event, CheckCompleted)
        by_check.setdefault((event.check_id.int, event.finished_at), (envelope.tenant, event))
    return list(by_check.values())


def _monitor_of(event: Contract) -> uuid.UUID:
    monitor_id: uuid.UUID = event.monitor_id  # type: ignore[attr-defined]
    return monitor_id


async def _owners(
    session: AsyncSession, pairs: set[tuple[str, uuid.UUID]], lock: bool
) -> tuple[dict[uuid.UUID, str], datetime | None]:
    """The workspace of each monitor, creating a placeholder projection row for a monitor whose
    monitor.created has not arrived yet (the first event about it names its workspace). With
    `lock`, the rows stay locked until commit (PostgreSQL): status timeline edits of the same
    monitor by two consumers must not interleave. Results need no lock here (their writes are
    inserts of unique rows and cell merges under the cells' own row locks), so batches of
    results run side by side.

    The compaction watermark comes along in the same statement (second item), a statement
    less per batch: on PostgreSQL read under its share lock, held until commit so compaction
    cannot fold past this batch's minute cells unseen; SQLite's one writer holds the database
    for the whole transaction, so there it cannot move in between anyway."""
    if not pairs:
        return {}, None
    ids: Collection[uuid.UUID] = {monitor_id for _, monitor_id in pairs}
    query = select(monitors.c.monitor_id, monitors.c.tenant)
    if is_postgres(session):
        ids = sorted(ids)  # every consumer locks them in the same order
        # One array parameter: one prepared statement whatever the batch's monitor count.
        query = query.where(
            monitors.c.monitor_id == any_(bindparam("ids", ids, type_=ARRAY(Uuid())))
        )
        if lock:
            query = query.order_by(monitors.c.monitor_id).with_for_update()
        rows = (await session.execute(query.add_columns(_WATERMARK_SHARED.label("folded")))).all()
        found = {row.monitor_id: row.tenant for row in rows}
        # No row, no watermark read (the subquery runs once per statement, if a row needs it)
        folded = rows[0].folded if rows else await folded_until(session, lock="share")
        folded = EPOCH if folded is None else folded
    else:
        found, folded = await sqlite_ingest.owners(session, ids)
    missing = [m for m in ids if m not in found]
    if not missing:  # the usual case: one read, no write
        return found, folded
    first_tenant = {monitor_id: tenant for tenant, monitor_id in sorted(pairs, reverse=True)}
    await session.execute(
        upsert(session, monitors).on_conflict_do_nothing(index_elements=["monitor_id"]),
        [{"monitor_id": m, "tenant": first_tenant[m], "tags": []} for m in missing],
    )
    again = await session.execute(query.where(monitors.c.monitor_id.in_(missing)))
    return {**found, **{row.monitor_id: row.tenant for row in again}}, folded


_WATERMARK_SHARED = (
    select(watermarks.c.folded_until)
    .where(watermarks.c.name == WATERMARK_NAME)
    .with_for_update(read=True)
    .scalar_subquery()
)


async def _apply_definitions(
    session: AsyncSession, events: Sequence[tuple[Envelope, Contract]]
) -> None:
    """monitor.created/updated/deleted, by occurred_at: an older definition never overwrites a
    newer one, whatever order they arrive in. The SLO a monitor carries follows only the
    definition that was applied (the upsert returns its row), so a replay or a late event
    leaves it as the newest definition made it; the projection row's lock, held until commit,
    keeps two consumers of one monitor's events in step."""
    for envelope, event in sorted(events, key=lambda pair: pair[0].occurred_at):
        monitor_id = _monitor_of(event)
        at = envelope.occurred_at
        values: dict[str, object]
        if isinstance(event, MonitorSnapshot):
            values = {
                "name": event.name,
                "type": event.type,
                "target": event.target,
                "tags": list(event.tags),
                "public": event.public,
                "paused": event.paused,
                "interval_seconds": event.interval_seconds,
                "definition_at": at,
            }
            if isinstance(event, MonitorCreated | MonitorUpdated):
                values["deleted_at"] = None
        else:
            values = {"definition_at": at, "deleted_at": at}
        insert = upsert(session, monitors).values(
            {"monitor_id": monitor_id, "tenant": envelope.tenant, "tags": [], **values}
        )
        newer = (monitors.c.definition_at.is_(None)) | (monitors.c.definition_at < at)
        same_tenant = monitors.c.tenant == envelope.tenant
        applied = await session.execute(
            insert.on_conflict_do_update(
                index_elements=["monitor_id"], set_=values, where=and_(newer, same_tenant)
            ).returning(monitors.c.monitor_id)
        )
        # A monitor.created that applies is the monitor's first definition here (any later one
        # would have won), so without an objective there is no SLO row to remove: a bulk import
        # of monitors without SLOs spends no statement on them.
        first_without_slo = isinstance(event, MonitorCreated) and event.slo is None
        if applied.first() is not None and not first_without_slo:
            snapshot = event if isinstance(event, MonitorSnapshot) else None
            await sync_monitor_slo(
                session,
                tenant=envelope.tenant,
                monitor_id=monitor_id,
                name=snapshot.name if snapshot else "",
                setting=snapshot.slo if snapshot else None,
                at=at,
            )


async def _apply_results(
    session: AsyncSession,
    events: Sequence[tuple[Envelope, Contract]],
    folded: datetime | None = None,
) -> None:
    """`folded`: the compaction watermark if the caller has read it in this transaction."""
    if not events:
        return
    checks = _unique_results(events)
    if folded is None:
        # Held (FOR SHARE) until commit, so compaction cannot fold past these minute cells
        # unseen.
        folded = await folded_until(session, lock="share")
    if not is_postgres(session):
        await sqlite_ingest.store_results(session, checks, folded)
        return
    inserted = await _insert_results_pg(session, checks)
    by_check = {(e.check_id, e.finished_at): (tenant, e) for tenant, e in checks}
    fresh = [by_check[(row.check_id, row.finished_at)] for row in inserted]
    if not fresh:
        return
    await merge_cells(session, summed_cells(fresh, folded))
    await _update_last_checks(session, [e for _, e in fresh])


# One statement with one array per column, whatever the batch size: PostgreSQL parses and
# plans it once per connection instead of a 12-column VALUES list of hundreds of rows.
_INSERT_RESULTS_PG = text(
    "INSERT INTO results (tenant, check_id, monitor_id, region, scheduled_at, started_at, "
    "finished_at, outcome, latency_ms, error_kind, status_code, phases) "
    "SELECT tenant, check_id, monitor_id, region, scheduled_at, started_at, finished_at, "
    "outcome, latency_ms, error_kind, status_code, CAST(phases AS json) FROM unnest("
    "CAST(:tenant AS varchar[]), CAST(:check_id AS uuid[]), CAST(:monitor_id AS uuid[]), "
    "CAST(:region AS varchar[]), CAST(:scheduled_at AS timestamptz[]), "
    "CAST(:started_at AS timestamptz[]), CAST(:finished_at AS timestamptz[]), "
    "CAST(:outcome AS varchar[]), CAST(:latency_ms AS float8[]), "
    "CAST(:error_kind AS varchar[]), CAST(:status_code AS integer[]), "
    "CAST(:phases AS text[])) AS batch(tenant, check_id, monitor_id, region, scheduled_at, "
    "started_at, finished_at, outcome, latency_ms, error_kind, status_code, phases) "
    "ON CONFLICT (finished_at, check_id) DO NOTHING RETURNING check_id, finished_at"
)


async def _insert_results_pg(
    session: AsyncSession, checks: Collection[tuple[str, CheckCompleted]]
) -> Any:
    # The arrays are filled straight from the events: no row dict per result on the way.
    tenants, events = zip(*checks, strict=True)
    return await session.execute(
        _INSERT_RESULTS_PG,
        {
            "tenant": list(tenants),
            "check_id": [e.check_id for e in events],
            "monitor_id": [e.monitor_id for e in events],
            "region": [e.region for e in events],
            "scheduled_at": [e.scheduled_at for e in events],
            "started_at": [e.started_at for e in events],
            "finished_at": [e.finished_at for e in events],
            "outcome": [e.outcome.value for e in events],
            "latency_ms": [e.latency_ms for e in events],
            "error_kind": [e.error_kind for e in events],
            "status_code": [e.status_code for e in events],
            "phases": [json.dumps(e.phases_ms) for e in events],
        },
    )


def cell_from_row(row: Any, *, histogram: bool = True) -> Cell:
    """A stored rollup cell; without its histogram when the caller merges those in bulk."""
    return Cell(
        up=row.up,
        degraded=row.degraded,
        down=row.down,
        latency_count=row.latency_count,
        latency_min=row.latency_min,
        latency_max=row.latency_max,
        latency_sum=row.latency_sum,
        # JSON object keys are text and the values numbers already
        phase_sums=dict(row.phase_sums or {}),
        phase_counts=dict(row.phase_counts or {}),
        histogram=Histogram.from_bytes(row.histogram) if histogram else Histogram(),
    )


_MERGE_ROUNDS = 5


async def merge_cells(session: AsyncSession, cells: dict[CellKey, tuple[str, Cell]]) -> None:
    """Add the batch's cells to the stored ones.

    First one INSERT ... ON CONFLICT DO NOTHING of every cell, in key order: the cells new to
    the database (the usual case for fresh minute cells) are done with it. The others are then
    read FOR UPDATE in the same key order, added in Python (histograms are bytes the database
    cannot add) and written back. An INSERT that meets another consumer's uncommitted row waits
    for its commit, so what is left after the INSERT exists and is committed; with one lock
    order throughout, consumers cannot deadlock, and the row lock means none loses an update.
    A cell pruned between the two steps is inserted again in the next round.

    SQLite adds them in one upsert instead (store/sqlite_ingest.py): its one writer at a time
    leaves no other transaction to wait for."""
    if not is_postgres(session):
        await sqlite_ingest.add_to_cells(session, cells)
        return
    pending = {key: cells[key] for key in sorted(cells)}
    for _ in range(_MERGE_ROUNDS):
        inserted = await _insert_new_cells(session, pending)
        pending = {key: value for key, value in pending.items() if key not in inserted}
        if not pending:
            return
        stored = await _locked_cells(session, list(pending))
        merged: dict[CellKey, tuple[str, Cell]] = {}
        for key, cell in stored.items():
            tenant, incoming = pending.pop(key)
            cell.merge(incoming)
            merged[key] = (tenant, cell)
        await _write_cells(session, merged)
        if not pending:
            return
    raise RuntimeError("rollup cells kept vanishing while being merged")


def _key_of(row: Any) -> CellKey:
    return (row.monitor_id, row.region, row.resolution, row.bucket_start)


async def _insert_new_cells(
    session: AsyncSession, cells: dict[CellKey, tuple[str, Cell]]
) -> set[CellKey]:
    inserted = await session.execute(_INSERT_ROLLUPS_PG, _pg_arrays(cells))
    return {_key_of(row) for row in inserted}


async def _locked_cells(session: AsyncSession, keys: Sequence[CellKey]) -> dict[CellKey, Cell]:
    """The stored cells of `keys` (those that exist), locked until commit."""
    found = await session.execute(
        _LOCK_ROLLUPS_PG,
        {
            "monitor_id": [k[0] for k in keys],
            "region": [k[1] for k in keys],
            "resolution": [k[2] for k in keys],
            "bucket_start": [k[3] for k in keys],
        },
    )
    return {_key_of(row): cell_from_row(row) for row in found}


async def _write_cells(session: AsyncSession, cells: dict[CellKey, tuple[str, Cell]]) -> None:
    if cells:
        await session.execute(_UPDATE_ROLLUPS_PG, _pg_arrays(cells))


_KEY_COLUMNS = ("monitor_id", "region", "resolution", "bucket_start")
_VALUE_COLUMNS = (
    "up",
    "degraded",
    "down",
    "latency_count",
    "latency_min",
    "latency_max",
    "latency_sum",
    "phase_sums",
    "phase_counts",
    "histogram",
)
# PostgreSQL statements are fed one array per column, whatever the batch size: parsed and
# planned once per connection instead of a VALUES list of hundreds of rows.
_ROLLUP_ARRAYS = {
    "monitor_id": "uuid",
    "region": "varchar",
    "resolution": "varchar",
    "bucket_start": "timestamptz",
    "tenant": "varchar",
    "up": "integer",
    "degraded": "integer",
    "down": "integer",
    "latency_count": "integer",
    "latency_min": "float8",
    "latency_max": "float8",
    "latency_sum": "float8",
    "phase_sums": "text",
    "phase_counts": "text",
    "histogram": "bytea",
}
_ROLLUP_JSON = ("phase_sums", "phase_counts")


def _pg_arrays(cells: dict[CellKey, tuple[str, Cell]]) -> dict[str, list[Any]]:
    """The cells as one array per column (`_ROLLUP_ARRAYS`), filled straight from the cells:
    no row dict per cell on the way."""
    keys = list(cells)
    tenants, values = zip(*cells.values(), strict=True) if cells else ((), ())
    return {
        "monitor_id": [k[0] for k in keys],
        "region": [k[1] for k in keys],
        "resolution": [k[2] for k in keys],
        "bucket_start": [k[3] for k in keys],
        "tenant": list(tenants),
        "up": [c.up for c in values],
        "degraded": [c.degraded for c in values],
        "down": [c.down for c in values],
        "latency_count": [c.latency_count for c in values],
        "latency_min": [c.latency_min for c in values],
        "latency_max": [c.latency_max for c in values],
        "latency_sum": [c.latency_sum for c in values],
        "phase_sums": [json.dumps(c.phase_sums) for c in values],
        "phase_counts": [json.dumps(c.phase_counts) for c in values],
        "histogram": [c.histogram.to_bytes() for c in values],
    }


def _batch(names: Iterable[str]) -> str:
    chosen = list(names)
    arrays = ", ".join(f"CAST(:{n} AS {_ROLLUP_ARRAYS[n]}[])" for n in chosen)
    return f"unnest({arrays}) AS batch({', '.join(chosen)})"


def _selected(name: str) -> str:
    return f"CAST(batch.{name} AS json)" if name in _ROLLUP_JSON else f"batch.{name}"


_INSERT_ROLLUPS_PG = text(
    f"INSERT INTO rollups ({', '.join(_ROLLUP_ARRAYS)}) "
    f"SELECT {', '.join(_selected(n) for n in _ROLLUP_ARRAYS)} FROM {_batch(_ROLLUP_ARRAYS)} "
    "ON CONFLICT (monitor_id, resolution, bucket_start, region) DO NOTHING "
    "RETURNING monitor_id, region, resolution, bucket_start"
)
_KEY_MATCH = " AND ".join(f"rollups.{n} = batch.{n}" for n in _KEY_COLUMNS)
_ALL_COLUMNS = ", ".join(f"rollups.{column.name}" for column in rollups.c)
# Locked in the order of the sorted keys (COLLATE "C" orders text as Python does).
_LOCK_ROLLUPS_PG = text(
    f"SELECT {_ALL_COLUMNS} FROM rollups JOIN {_batch(_KEY_COLUMNS)} ON {_KEY_MATCH} "
    'ORDER BY rollups.monitor_id, rollups.region COLLATE "C", '
    'rollups.resolution COLLATE "C", rollups.bucket_start FOR UPDATE OF rollups'
).columns(*rollups.c)
_UPDATE_ROLLUPS_PG = text(
    "UPDATE rollups SET "
    + ", ".join(f"{n} = {_selected(n)}" for n in _VALUE_COLUMNS)
    + f" FROM {_batch([*_KEY_COLUMNS, *_VALUE_COLUMNS])} WHERE {_KEY_MATCH}"
)


async def _update_last_checks(session: AsyncSession, fresh: Iterable[CheckCompleted]) -> None:
    latest: dict[uuid.UUID, CheckCompleted] = {}
    for event in fresh:
        known = latest.get(event.monitor_id)
        if known is None or known.finished_at < event.finished_at:
            latest[event.monitor_id] = event
    ordered = sorted(latest.values(), key=lambda e: e.monitor_id)
    # One UPDATE from four arrays rather than one UPDATE per monitor; the condition keeps a
    # newer last check written by another consumer.
    await session.execute(
        _UPDATE_LAST_CHECKS_PG,
        {
            "ids": [e.monitor_id for e in ordered],
            "finished": [e.finished_at for e in ordered],
            "outcomes": [e.outcome.value for e in ordered],
            "latencies": [e.latency_ms for e in ordered],
        },
    )


_UPDATE_LAST_CHECKS_PG = text(
    "UPDATE monitors SET last_check_at = latest.finished, last_outcome = latest.outcome, "
    "last_latency_ms = latest.latency "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:finished AS timestamptz[]), "
    "CAST(:outcomes AS varchar[]), CAST(:latencies AS float8[])) "
    "AS latest(monitor_id, finished, outcome, latency) "
    "WHERE monitors.monitor_id = latest.monitor_id "
    "AND (monitors.last_check_at IS NULL OR monitors.last_check_at < latest.finished)"
)


async def _apply_status_changes(
    session: AsyncSession, events: Sequence[tuple[Envelope, Contract]]
) -> None:
    """Place each change on its monitor's timeline by time, so late and out-of-order changes
    split the right interval: the interval before it now ends at it, and it ends where the next
    one starts (or stays open)."""
    changes = [(e.tenant, c) for e, c in events if isinstance(c, MonitorStatusChanged)]
    changes.sort(key=lambda pair: (pair[1].changed_at, str(pair[1].monitor_id)))
    if not is_postgres(session):
        # The same steps in one trip to SQLite's thread: a bulk import's first status changes
        # were four to five trips each
        await sqlite_ingest.place_status_changes(session, changes)
        return
    table = status_intervals
    for tenant, event in changes:
        m, at = event.monitor_id, event.changed_at
        same = await session.scalar(
            select(table.c.id).where(table.c.monitor_id == m, table.c.start_at == at)
        )
        if same is not None:
            # Two changes at the same instant: the one applied last holds.
            await session.execute(
                update(table)
                .where(table.c.id == same)
                .values(status=event.current.value, reason=event.reason[:500])
            )
            continue
        following = await session.scalar(
            select(table.c.start_at)
            .where(table.c.monitor_id == m, table.c.start_at > at)
            .order_by(table.c.start_at)
            .limit(1)
        )
        preceding = await session.scalar(
            select(table.c.id)
            .where(table.c.monitor_id == m, table.c.start_at < at)
            .order_by(table.c.start_at.desc())
            .limit(1)
        )
        if preceding is not None:
            await session.execute(update(table).where(table.c.id == preceding).values(end_at=at))
        await session.execute(
            table.insert().values(
                tenant=tenant,
                monitor_id=m,
                start_at=at,
                end_at=following,
                status=event.current.value,
                reason=event.reason[:500],
            )
        )


async def _apply_incidents(
    session: AsyncSession, events: Sequence[tuple[Envelope, Contract]]
) -> None:
    """Opened and resolved may arrive in either order; each fills in its own columns."""
    for envelope, event in events:
        if isinstance(event, IncidentOpened):
            opened = {
                "started_at": event.started_at,
                "cause": event.cause,
                "first_error": (event.first_error or "")[:2000] or None,
                "region": event.region,
            }
            await session.execute(
                upsert(session, incidents)
                .values(
                    incident_id=event.incident_id,
                    tenant=envelope.tenant,
                    monitor_id=event.monitor_id,
                    **opened,
                )
                .on_conflict_do_update(index_elements=["incident_id"], set_=opened)
            )
        elif isinstance(event, IncidentResolved):
            await session.execute(
                upsert(session, incidents)
                .values(
                    incident_id=event.incident_id,
                    tenant=envelope.tenant,
                    monitor_id=event.monitor_id,
                    started_at=event.started_at,
                    resolved_at=event.resolved_at,
                )
                .on_conflict_do_update(
                    index_elements=["incident_id"], set_={"resolved_at": event.resolved_at}
                )
            )
