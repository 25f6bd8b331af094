"""The evaluator applies a batch set-wise (one query per kind of row, not per result): a batch
spanning many monitors must end exactly where result-by-result application would, on SQLite
and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from pingtower.common.events import Outcome
from pingtower.pinger.store.tables import check_results, monitor_states
from tests.integration.pinger.harness import insert_monitor, outbox_events
from tests.integration.pinger.test_evaluator import Replica, completed


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
