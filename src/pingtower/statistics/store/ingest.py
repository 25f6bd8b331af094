"""The ingest effect: applies a batch of events inside the inbox's transaction.

Every step is idempotent on its own as well (a result is keyed by its check id, an incident by
its id, a status change by its time), so even the same fact carried by two different messages
lands once. Rollup cells of a batch are summed in memory first, then added to the stored cells
by one INSERT ... ON CONFLICT DO UPDATE that adds counts, sums and histogram buckets in the
database, so concurrent consumers and late results both add up correctly. Only minute cells are
written for fresh results; compaction folds them into hour and day cells (store/compaction.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import structlog
from prometheus_client import Counter
from sqlalchemy import (
    JSON,
    and_,
    bindparam,
    func,
    literal_column,
    select,
    text,
    update,
)
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
from pingtower.statistics.domain.rollups import Cell, Resolution, floor_to
from pingtower.statistics.store.dialect import is_postgres, upsert
from pingtower.statistics.store.tables import (
    incidents,
    monitors,
    results,
    rollups,
    status_intervals,
)
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

CellKey = tuple[uuid.UUID, str, str, datetime]  # monitor, region, resolution, bucket start


async def ingest(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
    parsed: list[tuple[Envelope, Contract]] = [(e, e.parse()) for e in envelopes]
    definitions = [(e, c) for e, c in parsed if isinstance(c, MonitorSnapshot | MonitorDeleted)]
    await _apply_definitions(session, definitions)

    facts = [(e, c) for e, c in parsed if not isinstance(c, MonitorSnapshot | MonitorDeleted)]
    timeline = any(isinstance(c, MonitorStatusChanged) for _, c in facts)
    owners = await _owners(session, {(e.tenant, _monitor_of(c)) for e, c in facts}, timeline)
    accepted: list[tuple[Envelope, Contract]] = []
    for envelope, event in facts:
        if owners[_monitor_of(event)] != envelope.tenant:
            log.warning(
                "event dropped: monitor belongs to another workspace",
                message_id=str(envelope.id),
                monitor_id=str(_monitor_of(event)),
            )
            continue
        accepted.append((envelope, event))

    await _apply_results(session, [(e, c) for e, c in accepted if isinstance(c, CheckCompleted)])
    await _apply_status_changes(
        session, [(e, c) for e, c in accepted if isinstance(c, MonitorStatusChanged)]
    )
    await _apply_incidents(
        session,
        [(e, c) for e, c in accepted if isinstance(c, IncidentOpened | IncidentResolved)],
    )
    for _envelope, event in parsed:
        INGESTED.labels(event.TYPE).inc()


def _monitor_of(event: Contract) -> uuid.UUID:
    monitor_id: uuid.UUID = event.monitor_id  # type: ignore[attr-defined]
    return monitor_id


async def _owners(
    session: AsyncSession, pairs: set[tuple[str, uuid.UUID]], lock: bool
) -> dict[uuid.UUID, str]:
    """The workspace of each monitor, creating a placeholder projection row for a monitor whose
    monitor.created has not arrived yet (the first event about it names its workspace). With
    `lock`, the rows stay locked until commit (PostgreSQL): status timeline edits of the same
    monitor by two consumers must not interleave. Results need no lock (their writes are
    inserts of unique rows and atomic additions), so batches of results run side by side."""
    if not pairs:
        return {}
    ids = sorted({monitor_id for _, monitor_id in pairs})
    query = select(monitors.c.monitor_id, monitors.c.tenant).where(monitors.c.monitor_id.in_(ids))
    if lock and is_postgres(session):
        query = query.order_by(monitors.c.monitor_id).with_for_update()
    found = {row.monitor_id: row.tenant for row in await session.execute(query)}
    missing = [m for m in ids if m not in found]
    if not missing:  # the usual case: one read, no write
        return found
    first_tenant = {monitor_id: tenant for tenant, monitor_id in sorted(pairs, reverse=True)}
    await session.execute(
        upsert(session, monitors).on_conflict_do_nothing(index_elements=["monitor_id"]),
        [{"monitor_id": m, "tenant": first_tenant[m], "tags": []} for m in missing],
    )
    again = await session.execute(query.where(monitors.c.monitor_id.in_(missing)))
    return {**found, **{row.monitor_id: row.tenant for row in again}}


async def _apply_definitions(
    session: AsyncSession, events: Sequence[tuple[Envelope, Contract]]
) -> None:
    """monitor.created/updated/deleted, by occurred_at: an older definition never overwrites a
    newer one, whatever order they arrive in."""
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
        await session.execute(
            insert.on_conflict_do_update(
                index_elements=["monitor_id"], set_=values, where=and_(newer, same_tenant)
            )
        )


async def _apply_results(
    session: AsyncSession, events: Sequence[tuple[Envelope, Contract]]
) -> None:
    if not events:
        return
    by_check: dict[tuple[uuid.UUID, datetime], tuple[str, CheckCompleted]] = {}
    for envelope, event in events:
        assert isinstance(event, CheckCompleted)
        by_check.setdefault((event.check_id, event.finished_at), (envelope.tenant, event))
    rows = [
        {
            "tenant": tenant,
            "check_id": e.check_id,
            "monitor_id": e.monitor_id,
            "region": e.region,
            "scheduled_at": e.scheduled_at,
            "started_at": e.started_at,
            "finished_at": e.finished_at,
            "outcome": e.outcome.value,
            "latency_ms": e.latency_ms,
            "error_kind": e.error_kind,
            "status_code": e.status_code,
            "phases": dict(e.phases_ms),
        }
        for tenant, e in by_check.values()
    ]
    if is_postgres(session):
        inserted = await _insert_results_pg(session, rows)
    else:
        # executemany: one cached statement, sent as multi-row INSERTs by the driver layer
        inserted = await session.execute(
            upsert(session, results)
            .on_conflict_do_nothing(index_elements=["check_id", "finished_at"])
            .returning(results.c.check_id, results.c.finished_at),
            rows,
        )
    fresh = [by_check[(row.check_id, row.finished_at)] for row in inserted]
    if not fresh:
        return
    # Held (FOR SHARE) until commit, so compaction cannot fold past these minute cells unseen.
    folded = await folded_until(session, lock="share")
    await merge_cells(session, _cells(fresh, folded))
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
    "ON CONFLICT (check_id, finished_at) DO NOTHING RETURNING check_id, finished_at"
)


async def _insert_results_pg(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> Any:
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    columns["phases"] = [json.dumps(phases) for phases in columns["phases"]]
    return await session.execute(_INSERT_RESULTS_PG, columns)


def _cells(
    fresh: Iterable[tuple[str, CheckCompleted]], folded_until: datetime
) -> dict[CellKey, tuple[str, Cell]]:
    """The batch's results summed per cell: a minute cell each, plus its hour and day cells
    when compaction has already folded past its minute (a late result)."""
    cells: dict[CellKey, tuple[str, Cell]] = {}
    for tenant, event in fresh:
        late = event.finished_at < folded_until
        resolutions = tuple(Resolution) if late else (Resolution.MINUTE,)
        for resolution in resolutions:
            key = (
                event.monitor_id,
                event.region,
                resolution.value,
                floor_to(event.finished_at, resolution.length),
            )
            _, cell = cells.setdefault(key, (tenant, Cell()))
            cell.add_result(event.outcome, event.latency_ms, event.phases_ms)
    return cells


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
        phase_sums={str(k): float(v) for k, v in (row.phase_sums or {}).items()},
        phase_counts={str(k): int(v) for k, v in (row.phase_counts or {}).items()},
        histogram=Histogram.from_json(row.histogram) if histogram else Histogram(),
    )


def _add_json_objects(session: AsyncSession, column: str) -> Any:
    """SQL adding the stored flat JSON object and the incoming one key by key."""
    if is_postgres(session):
        sql = _json_sum_pg(column)
    else:
        sql = (
            "(SELECT COALESCE(json_group_object(k, total), '{}') FROM ("
            "SELECT k, SUM(v) AS total FROM ("
            f"SELECT key AS k, value AS v FROM json_each(rollups.{column}) "
            f"UNION ALL SELECT key, value FROM json_each(excluded.{column})"
            ") GROUP BY k))"
        )
    return literal_column(sql, type_=JSON)


def _least(session: AsyncSession, a: Any, b: Any) -> Any:
    # PostgreSQL's LEAST skips NULLs; SQLite's two-argument MIN does not.
    if is_postgres(session):
        return func.least(a, b)
    return func.min(func.coalesce(a, b), func.coalesce(b, a))


def _greatest(session: AsyncSession, a: Any, b: Any) -> Any:
    if is_postgres(session):
        return func.greatest(a, b)
    return func.max(func.coalesce(a, b), func.coalesce(b, a))


async def merge_cells(session: AsyncSession, cells: dict[CellKey, tuple[str, Cell]]) -> None:
    """Add the batch's cells to the stored ones in one upsert: counts and sums added, min and
    max kept, JSON maps (histogram buckets, phase sums and counts) added key by key, all by the
    database under its row lock, so concurrent consumers cannot lose an update."""
    keys = sorted(cells)  # one lock order for every consumer: no deadlocks
    rows = []
    for key in keys:
        tenant, cell = cells[key]
        rows.append(
            {
                "monitor_id": key[0],
                "region": key[1],
                "resolution": key[2],
                "bucket_start": key[3],
                "tenant": tenant,
                "up": cell.up,
                "degraded": cell.degraded,
                "down": cell.down,
                "latency_count": cell.latency_count,
                "latency_min": cell.latency_min,
                "latency_max": cell.latency_max,
                "latency_sum": cell.latency_sum,
                "phase_sums": cell.phase_sums,
                "phase_counts": cell.phase_counts,
                "histogram": cell.histogram.to_json(),
            }
        )
    if is_postgres(session):
        await session.execute(
            text(_UPSERT_ROLLUPS_PG),
            {name: [row[name] for row in rows] for name in _ROLLUP_ARRAYS}
            | {name: [json.dumps(row[name]) for row in rows] for name in _ROLLUP_JSON},
        )
        return
    insert = upsert(session, rollups)
    new = insert.excluded
    r = rollups.c
    statement = insert.on_conflict_do_update(
        index_elements=["monitor_id", "resolution", "bucket_start", "region"],
        set_={
            "up": r.up + new.up,
            "degraded": r.degraded + new.degraded,
            "down": r.down + new.down,
            "latency_count": r.latency_count + new.latency_count,
            "latency_sum": r.latency_sum + new.latency_sum,
            "latency_min": _least(session, r.latency_min, new.latency_min),
            "latency_max": _greatest(session, r.latency_max, new.latency_max),
            "phase_sums": _add_json_objects(session, "phase_sums"),
            "phase_counts": _add_json_objects(session, "phase_counts"),
            "histogram": _add_json_objects(session, "histogram"),
        },
    )
    await session.execute(statement, rows)


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
}
_ROLLUP_JSON = ("phase_sums", "phase_counts", "histogram")


def _json_sum_pg(column: str) -> str:
    return (
        "(SELECT COALESCE(json_object_agg(k, total), '{}'::json) FROM ("
        "SELECT k, SUM(v) AS total FROM ("
        f"SELECT key AS k, value::numeric AS v FROM json_each_text(rollups.{column}) "
        f"UNION ALL SELECT key, value::numeric FROM json_each_text(excluded.{column})"
        ") AS parts GROUP BY k) AS summed)"
    )


# The same upsert as the portable one below, fed by one array per column (see results).
_UPSERT_ROLLUPS_PG = (
    f"INSERT INTO rollups ({', '.join([*_ROLLUP_ARRAYS, *_ROLLUP_JSON])}) "
    f"SELECT {', '.join(_ROLLUP_ARRAYS)}, "
    f"{', '.join(f'CAST({name} AS json)' for name in _ROLLUP_JSON)} FROM unnest("
    + ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in _ROLLUP_ARRAYS.items())
    + ", "
    + ", ".join(f"CAST(:{name} AS text[])" for name in _ROLLUP_JSON)
    + f") AS batch({', '.join([*_ROLLUP_ARRAYS, *_ROLLUP_JSON])}) "
    "ON CONFLICT (monitor_id, resolution, bucket_start, region) DO UPDATE SET "
    "up = rollups.up + excluded.up, degraded = rollups.degraded + excluded.degraded, "
    "down = rollups.down + excluded.down, "
    "latency_count = rollups.latency_count + excluded.latency_count, "
    "latency_sum = rollups.latency_sum + excluded.latency_sum, "
    "latency_min = LEAST(rollups.latency_min, excluded.latency_min), "
    "latency_max = GREATEST(rollups.latency_max, excluded.latency_max), "
    + ", ".join(f"{name} = {_json_sum_pg(name)}" for name in _ROLLUP_JSON)
)


async def _update_last_checks(session: AsyncSession, fresh: Iterable[CheckCompleted]) -> None:
    latest: dict[uuid.UUID, CheckCompleted] = {}
    for event in fresh:
        known = latest.get(event.monitor_id)
        if known is None or known.finished_at < event.finished_at:
            latest[event.monitor_id] = event
    ordered = sorted(latest.values(), key=lambda e: e.monitor_id)
    m = monitors.c
    if not is_postgres(session):
        # SQLite cannot name the columns of a VALUES list; one prepared UPDATE per monitor
        # costs little in-process.
        connection = await session.connection()
        await connection.execute(
            update(monitors)
            .where(
                m.monitor_id == bindparam("k_monitor"),
                m.last_check_at.is_(None) | (m.last_check_at < bindparam("k_finished")),
            )
            .values(
                last_check_at=bindparam("k_finished"),
                last_outcome=bindparam("k_outcome"),
                last_latency_ms=bindparam("k_latency"),
            ),
            [
                {
                    "k_monitor": e.monitor_id,
                    "k_finished": e.finished_at,
                    "k_outcome": e.outcome.value,
                    "k_latency": e.latency_ms,
                }
                for e in ordered
            ],
        )
        return
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
