"""The evaluator role: stores each `check.completed` and moves its monitor's status machine.

A batch is applied in one transaction, monitor by monitor in a fixed order, each under its
state row's lock (FOR UPDATE on PostgreSQL): replicas take turns per monitor and cannot
deadlock. A result scheduled before the last one applied is stored but not applied, so the
status never moves backwards in time. A result whose key (finished_at, check_id) is stored
already, a redelivery, is dropped: neither stored nor applied again (`result_keys`; the state
rows' locks are taken first, so two replicas given the same result cannot both miss it).

With several regions a round (one scheduled time) is collected in the state row until
`round_verdict` can decide it: k of n regions must fail for the round to count as a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol

import structlog
from prometheus_client import Counter
from sqlalchemy import delete, insert, select, text
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from pingtower.common.events import CheckCompleted, Envelope, Outcome, Status, utcnow
from pingtower.common.messaging.bus import BatchHandler, Bus
from pingtower.common.messaging.outbox import Outbox
from pingtower.common.runtime import Component
from pingtower.common.settings import Settings
from pingtower.common.sqlite_driver import PlainTransaction, driver_of, plain_transaction
from pingtower.common.sqlite_values import result_texts, utc_text
from pingtower.pinger.domain.maintenance import in_maintenance
from pingtower.pinger.domain.status import (
    Confirmation,
    Observation,
    counted_only,
    judge_result,
    majority,
    round_verdict,
    single_region_verdict,
)
from pingtower.pinger.evaluator import plain_rows
from pingtower.pinger.evaluator.plain_rows import Write, stored_insert, update_write
from pingtower.pinger.store.database import PingerDatabase
from pingtower.pinger.store.maintenance import TenantWindows, covering, tenant_windows
from pingtower.pinger.store.result_keys import (
    plain_stored_ids,
    plain_stored_lookup,
    stored_check_ids,
)
from pingtower.pinger.store.states import (
    LoadedStates,
    MonitorColumns,
    StateColumns,
    add_decision_events,
    changed_columns,
    changes_by_columns,
    decision_events,
    decision_values,
    load_states_after,
    load_states_with_monitors,
    plain_open_incident,
    plain_tenant_windows,
    state_from_row,
    update_states,
)
from pingtower.pinger.store.tables import check_results, monitor_states, monitors

log = structlog.get_logger(__name__)

CONSUMER = "pinger.evaluator"
# Results per batch at most. One consumer applies batches one after another (a monitor's
# results in order), each a transaction whose waits (the database thread, the event loop's
# other tasks) outweigh its CPU: at 50,000 monitors every 30 s, batches of 100 took 60 ms
# each, 1,650 results a second, just under the 1,667 arriving, and an evaluator that fell
# behind after an import stayed behind (bench/README.md, round 10). A batch holds only what is
# waiting, or what arrives while the bus lingers for it (embedded: 250 ms of results).
MAX_BATCH = 500
RESULTS_APPLIED = Counter(
    "pingtower_pinger_results_applied_total", "Check results applied to a monitor's status"
)
RESULTS_STALE = Counter(
    "pingtower_pinger_results_stale_total",
    "Check results stored but not applied: older than the last one applied",
)
RESULTS_REDELIVERED = Counter(
    "pingtower_pinger_results_redelivered_total",
    "Check results dropped: stored already (redelivered), or given twice in one batch",
)
TOMBSTONE_RETENTION = timedelta(days=1)
_NO_INCIDENT = uuid.UUID(int=0)  # given to the status machine for a result that opens none
# check_results' columns as the evaluator writes them (its id aside).
_RESULT_COLUMNS = (
    "check_id",
    "monitor_id",
    "tenant",
    "region",
    "scheduled_at",
    "started_at",
    "finished_at",
    "outcome",
    "latency_ms",
    "error_kind",
    "error_message",
    "status_code",
    "size_bytes",
    "phases_ms",
    "cert_expires_at",
    "previous_id",
)


def _stored_result_row(
    id_: int, tenant: str, result: CheckCompleted, previous_id: int | None
) -> tuple[Any, ...]:
    """A result's row of check_results (`id`, `_RESULT_COLUMNS`) as SQLAlchemy stores it on
    SQLite: its converted values from `result_texts`, which statistics' ingest shares."""
    texts = result_texts(result)
    cert = result.cert_expires_at
    return (
        id_,
        texts.check_id,
        texts.monitor_id,
        tenant,
        result.region,
        texts.scheduled_at,
        texts.started_at,
        texts.finished_at,
        result.outcome.value,
        result.latency_ms,
        result.error_kind,
        result.error_message,
        result.status_code,
        result.size_bytes,
        texts.phases_ms,
        None if cert is None else utc_text(cert),
        previous_id,
    )


Heads = Mapping[uuid.UUID, int | None]  # per monitor, its newest result stored before a batch


def chained(
    results: Sequence[tuple[str, CheckCompleted]], ids: Sequence[int], heads: Heads
) -> list[int | None]:
    """Each result's `previous_id`: its monitor's result stored just before it, in the same
    batch (`results`, stored under `ids` in that order) or before it (`heads`)."""
    newest = dict(heads)
    previous: list[int | None] = []
    for (_, result), id_ in zip(results, ids, strict=True):
        previous.append(newest.get(result.monitor_id))
        newest[result.monitor_id] = id_
    return previous


_DOWN = Outcome.DOWN
ByMonitor = dict[uuid.UUID, list[tuple[str, CheckCompleted]]]  # results with their workspaces


def _by_monitor(envelopes: Iterable[Envelope]) -> ByMonitor:
    """The batch's results (with their envelopes' workspaces) by monitor, in batch order."""
    by_monitor: ByMonitor = defaultdict(list)
    for envelope in envelopes:
        result = envelope.parse()
        if isinstance(result, CheckCompleted):
            by_monitor[result.monitor_id].append((envelope.tenant, result))
    return by_monitor


def _unstored(
    by_monitor: ByMonitor, order: list[uuid.UUID], stored: set[uuid.UUID]
) -> tuple[ByMonitor, list[uuid.UUID]]:
    """`by_monitor` less the results stored already (`stored`: their check ids) and less the
    second copy of a result given twice, with its monitors in `order` (its keys in lock order)
    less those left without results; those dropped are counted. Usually nothing is dropped,
    and both come back as given."""
    seen = set(stored)
    kept: ByMonitor = {}
    dropped = 0
    for monitor_id, given in by_monitor.items():
        fresh = []
        for item in given:
            check_id = item[1].check_id
            if check_id in seen:
                dropped += 1
            else:
                seen.add(check_id)
                fresh.append(item)
        if fresh:
            kept[monitor_id] = fresh
    if not dropped:
        return by_monitor, order
    RESULTS_REDELIVERED.inc(dropped)
    return kept, [monitor_id for monitor_id in order if monitor_id in kept]


def _results_of(by_monitor: ByMonitor) -> list[CheckCompleted]:
    return [result for given in by_monitor.values() for _, result in given]


def _uuid_int(value: uuid.UUID) -> int:
    return value.int


def _result_order(item: tuple[str, CheckCompleted]) -> tuple[datetime, str]:
    return item[1].scheduled_at, item[1].region


def _depth_in(monitors_: dict[uuid.UUID, MonitorColumns], monitor_id: uuid.UUID) -> int:
    """How many of the monitor's ancestors are among `monitors_` (bounded: no cycle hangs)."""
    depth = 0
    parent = monitors_[monitor_id].parent_id if monitor_id in monitors_ else None
    while parent in monitors_ and depth < len(monitors_):
        depth += 1
        parent = monitors_[parent].parent_id
    return depth


@lru_cache(maxsize=64)
def _confirmation(failures_before_down: int, successes_before_up: int) -> Confirmation:
    """Shared by the monitors with the same counts (a value object, validated once)."""
    return Confirmation(failures_before_down, successes_before_up)


Changes = dict[uuid.UUID, dict[str, Any]]  # per monitor, its state row's changed columns


class _Batch(Protocol):
    """Where a batch's reads and writes go, beside the state rows' read: a Session's
    transaction (PostgreSQL, and `Evaluator.apply`), or on SQLite a `plain_transaction` on the
    driver connection alone (`Evaluator.handler`)."""

    async def windows(self, tenant: str) -> TenantWindows:
        """Every maintenance window of the workspace."""

    async def store(
        self, results: Sequence[tuple[str, CheckCompleted]], last_id: int | None, heads: Heads
    ) -> list[int]:
        """Insert the results in one statement, each chained to its monitor's previous one
        (`chained`); their ids, in the order given."""

    async def write_states(self, changes: Changes) -> None:
        """The changed state rows, after the results stored (on SQLite both in the trip of
        the transaction's next statement or COMMIT)."""

    async def open_incident_of(self, monitor_id: uuid.UUID) -> uuid.UUID | None:
        """The monitor's open incident if it is DOWN, so a child's incident can be linked to
        it (and its notifications suppressed downstream)."""

    async def add_decision_events(self, *, tenant: str, **decided: Any) -> None:
        """A decision's events into the outbox (`states.decision_events`' arguments)."""


def _sqlite_result_rows(
    results: Sequence[tuple[str, CheckCompleted]],
    last_id: int | None,
    heads: Heads,
    writes: list[Write],
) -> list[int]:
    """On SQLite the ids are given here, following `last_id` (read under the transaction's
    write lock, which no other writer can take meanwhile): SQLite may return the rows of a
    multi-row INSERT ... RETURNING in any order, so SQLAlchemy, asked to sort them, sent one
    INSERT per result, a trip to SQLite's thread each, which was most of the evaluator's
    cost. The INSERT goes to `writes`, run with the state rows' UPDATEs."""
    first = (last_id or 0) + 1
    ids = list(range(first, first + len(results)))
    rows = [
        _stored_result_row(id_, tenant, result, previous_id)
        for id_, (tenant, result), previous_id in zip(
            ids, results, chained(results, ids, heads), strict=True
        )
    ]
    writes.append(stored_insert(check_results, ("id", *_RESULT_COLUMNS), rows))
    return ids


# PostgreSQL: ids for a batch's results from check_results' sequence, before they are stored
_DRAW_RESULT_IDS = text(
    "SELECT nextval(pg_get_serial_sequence('check_results', 'id')) FROM generate_series(1, :count)"
)


def _state_writes(dialect: Dialect, changes: Changes, writes: list[Write]) -> None:
    for columns, rows in changes_by_columns(changes).items():
        writes.append(update_write(dialect, monitor_states, columns, "monitor_id", rows))


class _SessionBatch:
    """A batch in a Session's transaction, on either database."""

    def __init__(self, session: AsyncSession, outbox: Outbox) -> None:
        self.session = session
        self.outbox = outbox
        self.dialect = session.get_bind().dialect
        self.writes: list[Write] = []  # SQLite: written with the state rows

    async def windows(self, tenant: str) -> TenantWindows:
        return await tenant_windows(self.session, tenant)

    async def store(
        self, results: Sequence[tuple[str, CheckCompleted]], last_id: int | None, heads: Heads
    ) -> list[int]:
        """PostgreSQL numbers the results from its sequence, drawn first so that each row
        names its predecessor (`chained`), in one statement per batch."""
        if not results:
            return []
        if self.dialect.name == "sqlite":
            return _sqlite_result_rows(results, last_id, heads, self.writes)
        drawn = await self.session.scalars(_DRAW_RESULT_IDS, {"count": len(results)})
        ids = sorted(int(found) for found in drawn)  # in the order results are applied
        columns = ("id", *_RESULT_COLUMNS)
        rows = [
            dict(
                zip(
                    columns,
                    (
                        id_,
                        result.check_id,
                        result.monitor_id,
                        tenant,
                        result.region,
                        result.scheduled_at,
                        result.started_at,
                        result.finished_at,
                        result.outcome.value,
                        result.latency_ms,
                        result.error_kind,
                        result.error_message,
                        result.status_code,
                        result.size_bytes,
                        result.phases_ms,
                        result.cert_expires_at,
                        previous_id,
                    ),
                    strict=True,
                )
            )
            for id_, (tenant, result), previous_id in zip(
                ids, results, chained(results, ids, heads), strict=True
            )
        ]
        await self.session.execute(insert(check_results), rows)
        return ids

    async def write_states(self, changes: Changes) -> None:
        """On SQLite with plain values (`plain_rows`), after the batch's results, all in the
        trip of the transaction's next statement or of its COMMIT."""
        if self.dialect.name != "sqlite":
            await update_states(self.session, changes)
            return
        _state_writes(self.dialect, changes, self.writes)
        await plain_rows.defer_writes(await driver_of(self.session), self.writes)
        self.writes.clear()

    async def open_incident_of(self, monitor_id: uuid.UUID) -> uuid.UUID | None:
        found = await self.session.scalar(
            select(monitor_states.c.incident_id).where(
                monitor_states.c.monitor_id == monitor_id,
                monitor_states.c.status == Status.DOWN.value,
            )
        )
        return found if isinstance(found, uuid.UUID) else None

    async def add_decision_events(self, *, tenant: str, **decided: Any) -> None:
        await add_decision_events(self.session, self.outbox, tenant=tenant, **decided)


class _PlainBatch:
    """A batch on SQLite in a `plain_transaction`: every statement on the driver connection,
    each value converted as its column's type would (tests compare the stored rows with
    those of `_SessionBatch`)."""

    def __init__(self, transaction: PlainTransaction, outbox: Outbox, dialect: Dialect) -> None:
        self.transaction = transaction
        self.driver = transaction.driver
        self.outbox = outbox
        self.dialect = dialect
        self.writes: list[Write] = []

    async def windows(self, tenant: str) -> TenantWindows:
        return await plain_tenant_windows(self.driver, tenant)

    async def store(
        self, results: Sequence[tuple[str, CheckCompleted]], last_id: int | None, heads: Heads
    ) -> list[int]:
        return _sqlite_result_rows(results, last_id, heads, self.writes) if results else []

    async def write_states(self, changes: Changes) -> None:
        _state_writes(self.dialect, changes, self.writes)
        await plain_rows.defer_writes(self.driver, self.writes)
        self.writes.clear()

    async def open_incident_of(self, monitor_id: uuid.UUID) -> uuid.UUID | None:
        return await plain_open_incident(self.driver, monitor_id)

    async def add_decision_events(self, *, tenant: str, **decided: Any) -> None:
        for event, occurred_at in decision_events(**decided):
            self.outbox.add_plain(self.transaction, event, tenant=tenant, occurred_at=occurred_at)


class Evaluator(Component):
    name = "pinger-evaluator"

    def __init__(
        self,
        db: PingerDatabase,
        bus: Bus,
        settings: Settings,
        *,
        prune_every_seconds: float = 300.0,
    ) -> None:
        self.db = db
        self.bus = bus
        self.retention = timedelta(hours=settings.results_retention_hours)
        self.prune_every_seconds = prune_every_seconds
        self._pruner: asyncio.Task[None] | None = None

    async def prepare(self) -> None:
        self.bus.subscribe(CONSUMER, ["check.completed"], self.handler(), max_batch=MAX_BATCH)

    def handler(self) -> BatchHandler:
        """The consumer of `check.completed`: on SQLite `_apply_plain`, without a Session;
        on PostgreSQL `apply_in_session`."""
        if self.db.engine.dialect.name == "sqlite":
            return self._apply_plain
        return self.apply_in_session

    async def apply_in_session(self, envelopes: Sequence[Envelope]) -> None:
        """`apply` in a transaction of its own."""
        with structlog.contextvars.bound_contextvars(consumer=CONSUMER):
            async with self.db.sessions() as session, session.begin():
                await self.apply(session, envelopes)

    async def start(self) -> None:
        self._pruner = asyncio.create_task(self._prune_forever(), name="pinger-results-pruner")

    async def stop(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
            self._pruner = None

    async def apply(self, session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
        """Apply a batch set-wise: the state rows with their monitors read in one query, every
        result stored in one statement and every changed state row written in one, rather than
        four statements per result; building and running statements was most of the
        embedded process's CPU (bench/README.md)."""
        named = _by_monitor(envelopes)
        if not named:
            return
        # One lock order for every replica: no deadlock between two batches. (The order of the
        # ids' integers is that of their texts, fixed-width hex, without making the texts.)
        order = sorted(named, key=_uuid_int)
        loaded = await load_states_with_monitors(session, order)
        # Under the state rows' locks: a replica given the same result waits for this one's
        # commit, then finds the result stored.
        stored = await stored_check_ids(session, _results_of(named))
        by_monitor, monitor_ids = _unstored(named, order, stored)
        if by_monitor:
            batch = _SessionBatch(session, self.db.outbox)
            await self._apply_loaded(batch, by_monitor, monitor_ids, loaded)

    async def _apply_plain(self, envelopes: Sequence[Envelope]) -> None:
        """`apply_in_session` on SQLite, on the driver connection alone (`_PlainBatch`): the
        lookup of the results stored already runs in the trip that reads the state rows."""
        named = _by_monitor(envelopes)
        if not named:
            return
        order = sorted(named, key=_uuid_int)
        with structlog.contextvars.bound_contextvars(consumer=CONSUMER):
            async with plain_transaction(self.db.evaluator_engine) as transaction:
                found, loaded = await load_states_after(
                    transaction.driver, plain_stored_lookup(_results_of(named)), order
                )
                by_monitor, monitor_ids = _unstored(named, order, plain_stored_ids(found))
                if by_monitor:
                    batch = _PlainBatch(transaction, self.db.outbox, self.db.engine.dialect)
                    await self._apply_loaded(batch, by_monitor, monitor_ids, loaded)

    async def _apply_loaded(
        self,
        batch: _Batch,
        by_monitor: ByMonitor,
        monitor_ids: list[uuid.UUID],
        loaded: LoadedStates,
    ) -> None:
        """`apply` after the state rows were read."""
        known = {monitor_id: monitor for monitor_id, (_, monitor) in loaded.states.items()}
        accepted: list[tuple[MonitorColumns, StateColumns, list[CheckCompleted]]] = []
        to_store: list[tuple[str, CheckCompleted]] = []
        # Parents before their children: a child failing with its parent in one batch is
        # linked to the parent's incident whatever their ids. (The rows are locked already.)
        for monitor_id in sorted(monitor_ids, key=lambda m: _depth_in(known, m)):
            state_row, monitor = loaded.states.get(monitor_id, (None, None))
            if state_row is None or monitor is None or monitor.deleted:
                log.info(
                    "result for an unknown or deleted monitor dropped", monitor_id=str(monitor_id)
                )
                continue
            kept: list[CheckCompleted] = []
            given = by_monitor[monitor_id]
            if len(given) > 1:
                given.sort(key=_result_order)
            for tenant, result in given:
                if tenant != monitor.tenant:
                    log.warning("result with a foreign tenant dropped", monitor_id=str(monitor_id))
                    continue
                kept.append(result)
            to_store.extend((monitor.tenant, result) for result in kept)
            accepted.append((monitor, state_row, kept))
        # SQLite: the results are written with the state rows, in one trip (`write_states`)
        heads = {monitor.id: state.last_stored_result_id for monitor, state, _ in accepted}
        result_ids = iter(await batch.store(to_store, loaded.last_result_id, heads))
        windows: dict[str, TenantWindows] = {}  # read once per batch and workspace
        for tenant in sorted(loaded.tenants_with_windows):
            windows[tenant] = await batch.windows(tenant)
        changes: Changes = {}
        applied = 0
        for monitor, state_row, kept in accepted:
            stored = [(result, next(result_ids)) for result in kept]
            applied += await self._apply_monitor(
                batch, monitor, state_row, stored, windows, changes
            )
        RESULTS_APPLIED.inc(applied)  # once per batch: the counter takes a lock per call
        await batch.write_states(changes)

    async def _apply_monitor(
        self,
        batch: _Batch,
        monitor: MonitorColumns,
        state_row: StateColumns,
        items: list[tuple[CheckCompleted, int]],
        tenant_windows_: dict[str, TenantWindows],
        changes: Changes,
    ) -> int:
        """Run one monitor's results through its status machine; the state row's changed
        columns go to `changes` (written for the whole batch at once), its events to the
        outbox. Returns how many results it applied."""
        monitor_id: uuid.UUID = monitor.id
        tenant: str = monitor.tenant
        confirmation = _confirmation(monitor.failures_before_down, monitor.successes_before_up)
        windows = covering(tenant_windows_[tenant], monitor_id) if tenant in tenant_windows_ else []
        regions = max(monitor.region_count, 1)
        quorum = monitor.failure_quorum or majority(regions)
        state = state_from_row(state_row)
        decided = state_row.last_scheduled_at
        round_at = state_row.round_scheduled_at
        stored_round = state_row.round_outcomes
        outcomes: dict[str, Outcome] = (
            {region: Outcome(value) for region, value in stored_round.items()}
            if stored_round
            else {}
        )
        pending: dict[str, Any] = {}  # later values of one column overwrite earlier ones
        if items:
            pending["last_stored_result_id"] = items[-1][1]  # stale ones too: each is stored
        applied = 0
        for result, result_id in items:
            at = result.scheduled_at
            if (decided is not None and at <= decided) or (round_at is not None and at < round_at):
                RESULTS_STALE.inc()  # its round is decided or superseded
                continue
            if round_at != at:
                round_at = at
                if outcomes:
                    outcomes = {}  # a newer round replaces an undecided one
            verdict: Outcome | None
            if regions == 1 and not outcomes:
                verdict = single_region_verdict(result.outcome)  # the usual monitor
            else:
                outcomes[result.region] = result.outcome
                verdict = round_verdict(outcomes, regions=regions, quorum=quorum)
            if verdict is None:
                pending.update(
                    round_scheduled_at=round_at,
                    round_outcomes={region: o.value for region, o in outcomes.items()} or None,
                    last_result_id=result_id,
                )
                continue
            maintenance = bool(windows) and in_maintenance(windows, at)
            counted = None if maintenance else counted_only(state, verdict, confirmation)
            if counted is not None:
                # The usual result: only the counts change, and no event is written. The
                # row's other columns keep their values (in `pending` if an earlier result of
                # the batch set them), so they are left out rather than set to the same.
                pending["consecutive_failures"] = counted.consecutive_failures
                pending["consecutive_successes"] = counted.consecutive_successes
                pending["last_scheduled_at"] = at
                pending["last_result_id"] = result_id
                pending["round_scheduled_at"] = None
                pending["round_outcomes"] = None
                state, decided, round_at = counted, at, None
                if outcomes:
                    outcomes = {}
                applied += 1
                continue
            observation = Observation(
                outcome=verdict,
                at=result.finished_at,
                check_id=result.check_id,
                error_kind=result.error_kind,
                error_message=result.error_message,
            )
            decision = judge_result(  # not a result `counted_only` can take
                state,
                observation,
                confirmation,
                # Only a failure can open an incident; a fresh id costs a read of urandom.
                incident_id=uuid.uuid4() if verdict == _DOWN else _NO_INCIDENT,
                in_maintenance=maintenance,
            )
            parent_incident = None
            if decision.opened is not None and monitor.parent_id is not None:
                # The parent may be in this batch: its state row must be written first.
                await batch.write_states(changes)
                changes.clear()
                parent_incident = await batch.open_incident_of(monitor.parent_id)
            pending.update(
                decision_values(decision),
                last_scheduled_at=at,
                last_result_id=result_id,
                round_scheduled_at=None,
                round_outcomes=None,
            )
            if decision.transition or decision.opened or decision.resolved:
                await batch.add_decision_events(
                    tenant=tenant,
                    monitor_id=monitor_id,
                    decision=decision,
                    check_id=result.check_id,
                    error_kind=result.error_kind,
                    error_message=result.error_message,
                    region=result.region,
                    parent_incident_id=parent_incident,
                )
            state, decided, round_at, outcomes = decision.state, at, None, {}
            applied += 1
        changed = changed_columns(state_row, pending)
        if changed:
            changes[monitor_id] = changed
        return applied

    async def prune(self) -> None:
        """Drop results past the retention window, and tombstones nobody needs any more."""
        now = utcnow()
        async with self.db.sessions() as session, session.begin():
            await session.execute(
                delete(check_results).where(check_results.c.finished_at < now - self.retention)
            )
            await session.execute(
                delete(monitors).where(monitors.c.deleted_at < now - TOMBSTONE_RETENTION)
            )

    async def _prune_forever(self) -> None:
        while True:
            try:
                await self.prune()
            except Exception:
                log.exception("pruning results failed")
            await asyncio.sleep(self.prune_every_seconds)
