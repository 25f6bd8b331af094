"""The evaluator applies a batch set-wise (one query per kind of row, not per result): a batch
spanning many monitors must end exactly where result-by-result application would, on SQLite
and on PostgreSQL."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import delete, event, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pingtower.common.events import CheckCompleted, MonitorStatusChanged, Outcome, Status
from pingtower.common.http.problems import Problem
from pingtower.common.sqlite_driver import OneTripConnection, plain_transaction
from pingtower.pinger.evaluator import plain_rows
from pingtower.pinger.evaluator.evaluator import _RESULT_COLUMNS, _sqlite_result_rows
from pingtower.pinger.evaluator.plain_rows import Write, run_writes, update_rows
from pingtower.pinger.store.maintenance import tenant_windows
from pingtower.pinger.store.monitors import encode_cursor, list_results
from pingtower.pinger.store.states import (
    load_states_with_monitors,
    load_states_with_monitors_generic,
    plain_open_incident,
    plain_tenant_windows,
)
from pingtower.pinger.store.tables import (
    check_results,
    maintenance_windows,
    monitor_states,
    outbox,
)
from tests.integration.pinger.harness import insert_monitor, outbox_events
from tests.integration.pinger.test_evaluator import T0, Replica, completed


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


@pytest.fixture
async def replica(database_url: str) -> AsyncIterator[Replica]:
    one = Replica(database_url)
    await one.db.prepare()
    yield one
    await one.db.engine.dispose()


async def states(replica: Replica) -> dict[uuid.UUID, object]:
    async with replica.db.sessions() as session:
        rows = (await session.execute(select(monitor_states))).all()
    return {row.monitor_id: row for row in rows}


async def last_result_ids(replica: Replica) -> dict[uuid.UUID, int]:
    async with replica.db.sessions() as session:
        rows = (
            await session.execute(
                select(check_results.c.monitor_id, check_results.c.id).order_by(
                    check_results.c.scheduled_at, check_results.c.id
                )
            )
        ).all()
    return {row.monitor_id: row.id for row in rows}


async def test_one_batch_over_many_monitors_moves_each_monitor_on_its_own_results(
    replica: Replica,
) -> None:
    failing = [await insert_monitor(replica.db) for _ in range(5)]
    healthy = [await insert_monitor(replica.db) for _ in range(5)]
    unknown = uuid.uuid4()
    batch = [completed(m, second) for second in (1, 2) for m in failing]
    batch += [completed(m, 1, Outcome.UP) for m in healthy]
    batch.append(completed(unknown, 1))

    await replica.deliver(batch)

    found = await states(replica)
    assert {found[m].status for m in failing} == {"down"}  # type: ignore[attr-defined]
    assert {found[m].status for m in healthy} == {"up"}  # type: ignore[attr-defined]
    assert {found[m].consecutive_failures for m in failing} == {2}  # type: ignore[attr-defined]
    # Each state row points at its own monitor's latest result, none at another's.
    latest = await last_result_ids(replica)
    assert unknown not in latest
    for monitor_id in failing + healthy:
        assert found[monitor_id].last_result_id == latest[monitor_id]  # type: ignore[attr-defined]
    events = await outbox_events(replica.db)
    opened = {e.payload["monitor_id"] for e in events if e.type == "incident.opened"}
    assert opened == {str(m) for m in failing}


async def test_a_child_in_the_same_batch_as_its_failing_parent_links_to_its_incident(
    replica: Replica,
) -> None:
    parent = await insert_monitor(replica.db, name="router")
    child = await insert_monitor(replica.db, name="web server", parent_id=parent)
    await replica.deliver([completed(parent, 0), completed(child, 0)])
    await replica.deliver([completed(child, 1), completed(parent, 1)])
    opened = {
        e.payload["monitor_id"]: e.payload
        for e in await outbox_events(replica.db)
        if e.type == "incident.opened"
    }
    assert opened[str(child)]["parent_incident_id"] == opened[str(parent)]["incident_id"]


@contextmanager
def statements(replica: Replica) -> Iterator[list[str]]:
    """The SQL statements the replica's engine runs meanwhile, those the evaluator's writes
    on SQLite run straight on the driver (`plain_rows.run_writes`, `defer_writes`) included."""
    seen: list[str] = []

    def keep(*args: Any) -> None:
        seen.append(str(args[2]))

    originals = {name: getattr(plain_rows, name) for name in ("run_writes", "defer_writes")}

    def kept(name: str) -> Any:
        async def writes_seen(session: AsyncSession, writes: Sequence[Write]) -> None:
            seen.extend(statement for statement, rows in writes if rows)
            await originals[name](session, writes)

        return writes_seen

    engine = replica.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", keep)
    for name in originals:
        setattr(plain_rows, name, kept(name))
    try:
        yield seen
    finally:
        for name, original in originals.items():
            setattr(plain_rows, name, original)
        event.remove(engine, "before_cursor_execute", keep)


async def test_a_batch_takes_as_many_statements_for_many_results_as_for_one(
    replica: Replica,
) -> None:
    monitor_ids = [await insert_monitor(replica.db) for _ in range(20)]
    await replica.deliver([completed(m, 0, Outcome.UP) for m in monitor_ids])

    with statements(replica) as for_one:
        await replica.deliver([completed(monitor_ids[0], 1, Outcome.UP)])
    with statements(replica) as for_many:
        await replica.deliver([completed(m, 1, Outcome.UP) for m in monitor_ids[1:]])

    assert len(for_many) == len(for_one)
    assert await stored(replica) == 2 * len(monitor_ids)


async def test_a_monitor_that_stays_up_writes_only_the_columns_that_changed(
    replica: Replica,
) -> None:
    monitor_id = await insert_monitor(replica.db)
    await replica.deliver([completed(monitor_id, 0, Outcome.UP)])

    with statements(replica) as seen:
        await replica.deliver([completed(monitor_id, 1, Outcome.UP)])

    (written,) = [s for s in seen if s.startswith("UPDATE monitor_states")]
    assigned = set(re.findall(r"(\w+)\s*=", written.split(" WHERE ")[0].split(" SET ")[1]))
    assert assigned == {
        "consecutive_successes",
        "last_scheduled_at",
        "last_result_id",
        "last_stored_result_id",
    }
    state = (await states(replica))[monitor_id]
    assert state.status == "up"  # type: ignore[attr-defined]
    assert state.consecutive_successes == 2  # type: ignore[attr-defined]
    assert state.last_scheduled_at == T0 + timedelta(seconds=1)  # type: ignore[attr-defined]
    assert state.last_result_id == (await last_result_ids(replica))[monitor_id]  # type: ignore[attr-defined]


async def test_results_are_numbered_after_the_last_stored_in_the_order_applied(
    replica: Replica,
) -> None:
    monitor_id = await insert_monitor(replica.db)
    await replica.deliver([completed(monitor_id, 0, Outcome.UP)])
    # Delivered out of order: stored (and numbered) in schedule order.
    await replica.deliver([completed(monitor_id, s, Outcome.UP) for s in (3, 1, 2)])
    async with replica.db.sessions() as session:
        rows = (
            await session.execute(
                select(check_results.c.id, check_results.c.scheduled_at).order_by(
                    check_results.c.id
                )
            )
        ).all()
    assert [row.scheduled_at for row in rows] == [T0 + timedelta(seconds=s) for s in range(4)]
    assert len({row.id for row in rows}) == 4


async def stored(replica: Replica) -> int:
    async with replica.db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(check_results)) or 0)


async def raw_rows(session: AsyncSession, table: str, order_by: str) -> list[tuple[Any, ...]]:
    connection = await session.connection()
    found = await connection.exec_driver_sql(f"SELECT * FROM {table} ORDER BY {order_by}")
    return [tuple(row) for row in found]


async def test_plain_rows_store_exactly_what_sqlalchemy_stores(sqlite_url: str) -> None:
    one = Replica(sqlite_url)
    await one.db.prepare()
    try:
        # (A result's row: test_the_evaluator_stores_a_result_row_exactly_as_sqlalchemy_stores_it)
        changed = {
            "status": "down",
            "since": T0,
            "incident_id": uuid.uuid4(),
            "incident_started_at": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
            "round_outcomes": None,
            "last_result_id": 7,
        }
        by_sqlalchemy = await insert_monitor(one.db, name="a")
        by_plain_rows = await insert_monitor(one.db, name="b")
        async with one.db.sessions() as session, session.begin():
            await session.execute(
                update(monitor_states)
                .where(monitor_states.c.monitor_id == by_sqlalchemy)
                .values(**changed)
            )
            await update_rows(
                session,
                monitor_states,
                tuple(changed),
                "monitor_id",
                [(*changed.values(), by_plain_rows)],
            )
            rows = {row[0]: row for row in await raw_rows(session, "monitor_states", "tenant")}
        expected = dict(zip(monitor_states.c.keys(), rows[by_sqlalchemy.hex], strict=True))
        found = dict(zip(monitor_states.c.keys(), rows[by_plain_rows.hex], strict=True))
        for name in ("monitor_id", "changed_at"):  # set apart from this test's values
            del expected[name], found[name]
        assert found == expected

        async with one.db.sessions() as session:
            with pytest.raises(ValueError, match="naive"):
                await update_rows(
                    session,
                    monitor_states,
                    ("since",),
                    "monitor_id",
                    [(datetime(2026, 11, 29, 13, 0), by_plain_rows)],
                )
    finally:
        await one.db.engine.dispose()


async def test_the_evaluator_stores_a_result_row_exactly_as_sqlalchemy_stores_it(
    sqlite_url: str,
) -> None:
    one = Replica(sqlite_url)
    await one.db.prepare()
    try:
        event = CheckCompleted(
            check_id=uuid.uuid4(),
            monitor_id=uuid.uuid4(),
            region="eu",
            # Not UTC, and without microseconds: both must be stored as SQLAlchemy stores them.
            scheduled_at=datetime(2026, 11, 29, 13, 0, tzinfo=timezone(timedelta(hours=5))),
            started_at=T0,
            finished_at=T0 + timedelta(microseconds=1),
            outcome=Outcome.DEGRADED,
            latency_ms=12.5,
            error_kind="http",
            error_message="slow",
            status_code=200,
            size_bytes=512,
            phases_ms={"connect": 0.5, "ttfb": 2.25, "dns": -0.0, "tls": 3},
            cert_expires_at=datetime(2027, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
        )
        given = {"tenant": "acme", "outcome": event.outcome.value, "previous_id": 1}
        values = {name: given.get(name, getattr(event, name, None)) for name in _RESULT_COLUMNS}
        async with one.db.sessions() as session, session.begin():
            await session.execute(insert(check_results), [{"id": 1, **values}])
            [first] = await raw_rows(session, "check_results", "id")
            # The same result cannot be stored twice (its key is unique)
            await session.execute(delete(check_results))
            writes: list[Write] = []
            heads = {event.monitor_id: 1}
            assert _sqlite_result_rows([("acme", event)], 1, heads, writes) == [2]
            await run_writes(session, writes)
            [second] = await raw_rows(session, "check_results", "id")
        assert second[0] == 2
        assert first[1:] == second[1:]
    finally:
        await one.db.engine.dispose()


async def test_state_rows_read_on_sqlite_are_those_sqlalchemy_reads(sqlite_url: str) -> None:
    """The evaluator's plain reader of state rows (SQLite) against the typed one, over rows
    with every kind of value: an open incident, a round being collected, a parent, a
    tombstone, a workspace with maintenance windows, a quorum."""
    one = Replica(sqlite_url)
    await one.db.prepare()
    try:
        parent = await insert_monitor(one.db)
        plain = await insert_monitor(one.db, regions=["eu", "us", "ap"], failure_quorum=2)
        child = await insert_monitor(one.db, parent_id=parent, tenant="other")
        gone = await insert_monitor(one.db, deleted_at=T0)
        async with one.db.sessions() as session, session.begin():
            await session.execute(
                update(monitor_states)
                .where(monitor_states.c.monitor_id == parent)
                .values(
                    status="down",
                    since=T0 + timedelta(microseconds=7),
                    consecutive_failures=3,
                    incident_id=uuid.uuid4(),
                    incident_started_at=T0,
                    incident_cause="connect",
                    incident_first_error="refused",
                    last_scheduled_at=T0 + timedelta(seconds=1),
                    last_result_id=41,
                )
            )
            await session.execute(
                update(monitor_states)
                .where(monitor_states.c.monitor_id == plain)
                .values(
                    round_scheduled_at=T0 + timedelta(seconds=2),
                    round_outcomes={"eu": "down", "us": "up"},
                )
            )
            await session.execute(
                insert(maintenance_windows).values(
                    id=uuid.uuid4(),
                    tenant="other",
                    name="upgrade",
                    kind="once",
                    starts_at=T0,
                    ends_at=T0 + timedelta(hours=1),
                    monitor_ids=[],
                    timezone="UTC",
                    created_at=T0,
                )
            )
            writes: list[Write] = []
            _sqlite_result_rows([("acme", completed_event(plain))], None, {}, writes)
            await run_writes(session, writes)
        ids = [parent, plain, child, gone, uuid.uuid4()]  # the last one has no rows
        async with one.db.sessions() as session:
            found = await load_states_with_monitors(session, ids)
            expected = await load_states_with_monitors_generic(session, ids)
        assert found == expected
        assert set(found.states) == {parent, plain, child, gone}
        assert found.tenants_with_windows == {"other"}
        assert found.last_result_id == 1
        assert found.states[gone][1].deleted is True
        assert found.states[plain][1].region_count == 3
    finally:
        await one.db.engine.dispose()


def completed_event(monitor_id: uuid.UUID) -> CheckCompleted:
    parsed = completed(monitor_id, 0).parse()
    assert isinstance(parsed, CheckCompleted)
    return parsed


def _normalised(value: Any, seen: dict[str, str]) -> Any:
    """`value` with each incident id (random per run) replaced by its order of appearance."""
    if isinstance(value, dict):
        return {
            key: (
                seen.setdefault(str(item), f"incident {len(seen)}")
                if key.endswith("incident_id") and item is not None
                else _normalised(item, seen)
            )
            for key, item in value.items()
        }
    return value


async def _everything(replica: Replica) -> dict[str, Any]:
    """What the evaluator stored, comparable between two replicas fed the same batches."""
    incidents: dict[str, str] = {}
    async with replica.db.sessions() as session:
        results = await raw_rows(session, "check_results", "id")
        state_rows = (
            await session.execute(select(monitor_states).order_by(monitor_states.c.monitor_id))
        ).all()
    return {
        "results": results,
        "states": [
            _normalised({k: v for k, v in row._asdict().items() if k != "changed_at"}, incidents)
            for row in state_rows
        ],
        "events": [
            (e.type, e.tenant, e.occurred_at, _normalised(e.payload, incidents))
            for e in await outbox_events(replica.db)
        ],
    }


async def test_the_plain_path_applies_and_stores_what_the_session_path_does(
    tmp_path: Any,
) -> None:
    """On SQLite the evaluator works on the driver connection alone, its lookup of results
    stored already in the trip that reads the state rows; fed the same batches
    (redeliveries, a message given twice, results out of order and late, failures opening and
    resolving incidents, a parent and its child, several regions), it stores the same
    results, states and events as `apply_in_session`, the path PostgreSQL takes."""
    plain = Replica(f"sqlite+aiosqlite:///{tmp_path}/plain.sqlite3")
    in_session = Replica(f"sqlite+aiosqlite:///{tmp_path}/session.sqlite3")
    in_session.handle = in_session.evaluator.apply_in_session
    lone, parent, child, regional = (uuid.uuid4() for _ in range(4))
    for one in (plain, in_session):
        await one.db.prepare()
        await insert_monitor(one.db, id=lone)
        await insert_monitor(one.db, id=parent, name="router")
        await insert_monitor(one.db, id=child, name="web", parent_id=parent)
        await insert_monitor(one.db, id=regional, regions=["a", "b", "c"], failure_quorum=2)
        async with one.db.sessions() as session, session.begin():
            # The same start in both (a first transition is dated no earlier)
            await session.execute(update(monitor_states).values(since=T0 - timedelta(days=1)))
    try:
        first = [completed(lone, 0, Outcome.UP), completed(regional, 0, region="a")]
        failing = [completed(parent, 4), completed(child, 4)]
        down = [completed(child, 5), completed(parent, 5)]
        twice = completed(lone, 1)
        batches = [
            first,
            [*first, twice, twice],  # redelivered, and one message given twice
            [completed(lone, 3), completed(lone, 2)],  # out of order
            [completed(lone, 1, Outcome.UP)],  # late: stored, not applied
            [completed(regional, 0, region="b"), *failing],
            down,
            down,  # redelivered whole
            [completed(regional, 0, region="c", outcome=Outcome.UP)],
            [completed(lone, 6, Outcome.UP), completed(regional, 1, Outcome.UP, region="a")],
            [*failing, completed(parent, 7, Outcome.UP)],
        ]
        for batch in batches:
            await plain.deliver(batch)
            await in_session.deliver(batch)
        found = await _everything(plain)
        assert found == await _everything(in_session)
        assert len(found["results"]) == 15  # each result once, the late one included
        assert {e[0] for e in found["events"]} >= {"incident.opened", "incident.resolved"}
    finally:
        await plain.db.engine.dispose()
        await in_session.db.engine.dispose()


async def test_a_batch_on_sqlite_is_two_trips_to_sqlites_thread(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = Replica(sqlite_url)
    await one.db.prepare()
    try:
        monitor_ids = [await insert_monitor(one.db) for _ in range(5)]
        await one.deliver([completed(m, 0, Outcome.UP) for m in monitor_ids])
        trips = 0
        original: Any = OneTripConnection._execute

        async def counted(connection: Any, function: Any, *args: Any) -> Any:
            nonlocal trips
            trips += 1
            return await original(connection, function, *args)

        monkeypatch.setattr(OneTripConnection, "_execute", counted)
        await one.deliver([completed(m, 1, Outcome.UP) for m in monitor_ids])
        # BEGIN, the inbox's claim and the state rows' read; the results, the state rows and
        # COMMIT. (Before: BEGIN and claim, read, writes, COMMIT.)
        assert trips == 2
        monkeypatch.undo()
        found = await states(one)
        assert {found[m].consecutive_successes for m in monitor_ids} == {2}  # type: ignore[attr-defined]
    finally:
        await one.db.engine.dispose()


async def test_the_plain_outbox_row_is_the_row_sqlalchemy_stores(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Outbox.add_plain` (the evaluator's events on SQLite, without a Session) against
    `Outbox.add`: the same event with the same id and times is stored byte for byte alike."""
    one = Replica(sqlite_url)
    await one.db.prepare()
    woken = one.db.outbox.wakeup_event()
    event_id = uuid.uuid4()
    monkeypatch.setattr("pingtower.common.events.new_event_id", lambda: event_id)
    monkeypatch.setattr(
        "pingtower.common.messaging.outbox.utcnow", lambda: T0 + timedelta(microseconds=5)
    )
    changed = MonitorStatusChanged(
        monitor_id=uuid.uuid4(),
        previous=Status.UP,
        current=Status.DOWN,
        changed_at=T0,
        reason="2 consecutive failures",
        check_id=uuid.uuid4(),
        incident_id=uuid.uuid4(),
        error_kind="connect",
        error_message="refused",
    )
    try:
        async with one.db.sessions() as session, session.begin():
            await one.db.outbox.add(session, changed, tenant="acme", occurred_at=T0)
            first = (await raw_rows(session, "outbox", "id"))[0]
            await session.execute(delete(outbox))  # the message id is unique
        woken.clear()
        async with plain_transaction(one.db.engine) as transaction:
            one.db.outbox.add_plain(transaction, changed, tenant="acme", occurred_at=T0)
            assert not woken.is_set()  # only once committed
        assert woken.is_set()
        async with one.db.sessions() as session:
            (second,) = await raw_rows(session, "outbox", "id")
        assert second[1:] == first[1:]
        assert isinstance(second[3], bytes)  # a BLOB, as SQLAlchemy's LargeBinary stores it
    finally:
        await one.db.engine.dispose()


async def test_the_plain_reads_of_windows_and_open_incidents_are_those_sqlalchemy_reads(
    sqlite_url: str,
) -> None:
    """`plain_tenant_windows` and `plain_open_incident` (SQLite, without a Session) against
    `tenant_windows` and the typed query, over every kind of window."""
    one = Replica(sqlite_url)
    await one.db.prepare()
    down, up = await insert_monitor(one.db), await insert_monitor(one.db)
    incident = uuid.uuid4()
    common = {"tenant": "acme", "timezone": "Europe/Berlin", "created_at": T0}
    windows = [
        {"kind": "once", "starts_at": T0, "ends_at": T0 + timedelta(microseconds=1)},
        {"kind": "weekly", "days": [0, 4], "start_time": "02:30", "duration_minutes": 90},
        {"kind": "cron", "cron": "0 3 * * *", "duration_minutes": 30},
    ]
    try:
        async with one.db.sessions() as session, session.begin():
            for n, window in enumerate(windows):
                covered = [str(down)] if n else []
                await session.execute(
                    insert(maintenance_windows).values(
                        id=uuid.uuid4(), name=f"w{n}", monitor_ids=covered, **common, **window
                    )
                )
            for monitor_id in (down, up):
                await session.execute(
                    update(monitor_states)
                    .where(monitor_states.c.monitor_id == monitor_id)
                    .values(status="down" if monitor_id == down else "up", incident_id=incident)
                )
        async with one.db.sessions() as session:
            expected = await tenant_windows(session, "acme")
        async with plain_transaction(one.db.engine) as transaction:
            found = await plain_tenant_windows(transaction.driver, "acme")
            assert await plain_tenant_windows(transaction.driver, "other") == []
            opened = [
                await plain_open_incident(transaction.driver, monitor_id)
                for monitor_id in (down, up, uuid.uuid4())
            ]
        assert len(found) == 3
        assert found == expected
        assert opened == [incident, None, None]  # an open incident only of a DOWN monitor
    finally:
        await one.db.engine.dispose()


async def listed(
    replica: Replica, monitor_id: uuid.UUID, limit: int, cursor: str | None = None
) -> list[int]:
    """The ids `list_results` gives for the monitor, page after page from `cursor`."""
    ids: list[int] = []
    async with replica.db.sessions() as session:
        for _ in range(100):
            rows, cursor = await list_results(session, monitor_id, cursor=cursor, limit=limit)
            assert len(rows) <= limit
            ids += [row.id for row in rows]
            if cursor is None:
                return ids
    raise AssertionError("the pages did not end")


async def test_a_monitors_results_are_listed_newest_first_through_their_chain(
    replica: Replica,
) -> None:
    """Results of one monitor in one batch, results of two monitors interleaved, and a stale
    one (stored, not applied): each monitor lists exactly its stored results, newest first,
    whatever the page size; a cursor of another monitor's result is refused; a chain ends at
    a result pruned since."""
    a, b = await insert_monitor(replica.db), await insert_monitor(replica.db)
    await replica.deliver([completed(a, 0, Outcome.UP), completed(b, 0), completed(a, 1)])
    await replica.deliver([completed(b, 1), completed(a, 2, Outcome.UP)])
    await replica.deliver([completed(a, 1, Outcome.UP)])  # stale: round 2 is decided
    async with replica.db.sessions() as session:
        rows = (await session.execute(select(check_results.c.monitor_id, check_results.c.id))).all()
    of = {m: sorted((row.id for row in rows if row.monitor_id == m), reverse=True) for m in (a, b)}
    assert (len(of[a]), len(of[b])) == (4, 2)
    for limit in (1, 2, 3, 4, 500):
        assert await listed(replica, a, limit) == of[a]
        assert await listed(replica, b, limit) == of[b]
    assert await listed(replica, a, 2, encode_cursor(of[a][1])) == of[a][2:]

    async with replica.db.sessions() as session:
        with pytest.raises(Problem) as refused:
            await list_results(session, b, cursor=encode_cursor(of[a][0]), limit=10)
    assert refused.value.status == 400

    async with replica.db.sessions() as session, session.begin():
        await session.execute(delete(check_results).where(check_results.c.id == of[a][2]))
    assert await listed(replica, a, 2) == of[a][:2]


async def test_results_stored_already_are_dropped_by_their_key(replica: Replica) -> None:
    """A batch redelivered whole, a result given twice in one batch, and stored results
    redelivered among new ones: each result is stored and applied once, the monitor's chain
    goes through the stored results only, and every copy dropped is counted."""
    a, b = await insert_monitor(replica.db), await insert_monitor(replica.db)
    first = [completed(a, 0), completed(b, 0, Outcome.UP)]
    again = completed(a, 1)
    dropped_before = _redelivered()
    await replica.deliver(first)
    await replica.deliver(first)  # redelivered whole: nothing to apply
    await replica.deliver([again, completed(b, 1, Outcome.UP), again])  # a copy in the batch
    await replica.deliver([*first, completed(a, 2), again, completed(b, 2)])
    assert _redelivered() - dropped_before == 2 + 1 + 3

    async with replica.db.sessions() as session:
        rows = (await session.execute(select(check_results.c.monitor_id, check_results.c.id))).all()
    of = {m: sorted((row.id for row in rows if row.monitor_id == m), reverse=True) for m in (a, b)}
    assert (len(of[a]), len(of[b])) == (3, 3)
    assert await listed(replica, a, 10) == of[a]
    assert await listed(replica, b, 10) == of[b]
    found = await states(replica)
    assert found[a].consecutive_failures == 3  # type: ignore[attr-defined]
    assert found[a].status == "down"  # type: ignore[attr-defined]
    assert found[b].consecutive_failures == 1  # type: ignore[attr-defined]
    events = [e.type for e in await outbox_events(replica.db)]
    assert events.count("incident.opened") == 1


def _redelivered() -> float:
    return REGISTRY.get_sample_value("pingtower_pinger_results_redelivered_total") or 0.0
