"""The evaluator against real databases: results stored and applied in order, once, also with
two replicas racing on one monitor (PostgreSQL row lock)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select, update

from pingtower.common.events import CheckCompleted, Envelope, Outcome, utcnow
from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.settings import Settings
from pingtower.pinger.evaluator.evaluator import Evaluator
from pingtower.pinger.store.database import PingerDatabase
from pingtower.pinger.store.tables import check_results, maintenance_windows, monitor_states
from tests.integration.pinger.harness import insert_monitor, outbox_events

T0 = utcnow().replace(microsecond=0)


def completed(
    monitor_id: uuid.UUID,
    second: int,
    outcome: Outcome = Outcome.DOWN,
    tenant: str = "acme",
    region: str = "default",
) -> Envelope:
    at = T0 + timedelta(seconds=second)
    result = CheckCompleted(
        check_id=uuid.uuid4(),
        monitor_id=monitor_id,
        region=region,
        scheduled_at=at,
        started_at=at,
        finished_at=at + timedelta(milliseconds=20),
        outcome=outcome,
        latency_ms=20.0,
        error_kind=None if outcome == Outcome.UP else "connect",
        error_message=None if outcome == Outcome.UP else "connection refused",
    )
    return Envelope.wrap(result, producer="pinger.probe", tenant=tenant)


class Replica:
    def __init__(self, url: str) -> None:
        settings = Settings(pinger_database_url=url)
        self.db = PingerDatabase(settings, InProcessBus())
        self.evaluator = Evaluator(self.db, InProcessBus(), settings)
        self.handle = self.evaluator.handler()

    async def deliver(self, envelopes: Sequence[Envelope]) -> None:
        await self.handle(envelopes)


@pytest.fixture
async def replica(sqlite_url: str) -> AsyncIterator[Replica]:
    one = Replica(sqlite_url)
    await one.db.prepare()
    yield one
    await one.db.engine.dispose()


async def state_of(db: PingerDatabase, monitor_id: uuid.UUID) -> object:
    async with db.sessions() as session:
        return (
            await session.execute(
                select(monitor_states).where(monitor_states.c.monitor_id == monitor_id)
            )
        ).one()


async def stored_results(db: PingerDatabase, monitor_id: uuid.UUID) -> int:
    async with db.sessions() as session:
        count = await session.scalar(
            select(func.count()).where(check_results.c.monitor_id == monitor_id)
        )
    return int(count or 0)


async def test_two_failures_make_the_monitor_down_with_events_in_the_outbox(
    replica: Replica,
) -> None:
    monitor_id = await insert_monitor(replica.db)
    await replica.deliver([completed(monitor_id, 0, Outcome.UP)])
    await replica.deliver([completed(monitor_id, 1), completed(monitor_id, 2)])
    state = await state_of(replica.db, monitor_id)
    assert state.status == "down"  # type: ignore[attr-defined]
    events = await outbox_events(replica.db)
    assert [e.type for e in events] == [
        "monitor.status_changed",
        "monitor.status_changed",
        "incident.opened",
        "monitor.status_changed",
    ]
    opened = events[2].payload
    assert opened["cause"] == "connect"
    assert opened["first_error"] == "connection refused"
    assert events[3].payload["incident_id"] == opened["incident_id"]
    assert all(e.tenant == "acme" for e in events)


async def test_a_redelivered_result_changes_nothing(replica: Replica) -> None:
    monitor_id = await insert_monitor(replica.db)
    first = completed(monitor_id, 0)
    await replica.deliver([first])
    await replica.deliver([first])
    state = await state_of(replica.db, monitor_id)
    assert state.consecutive_failures == 1  # type: ignore[attr-defined]
    assert await stored_results(replica.db, monitor_id) == 1


async def test_a_result_older_than_the_last_applied_is_stored_but_not_applied(
    replica: Replica,
) -> None:
    monitor_id = await insert_monitor(replica.db)
    await replica.deliver([completed(monitor_id, 10, Outcome.UP)])
    await replica.deliver([completed(monitor_id, 5), completed(monitor_id, 6)])
    state = await state_of(replica.db, monitor_id)
    assert state.status == "up"  # type: ignore[attr-defined]
    assert await stored_results(replica.db, monitor_id) == 3


async def test_a_batch_is_applied_in_schedule_order(replica: Replica) -> None:
    monitor_id = await insert_monitor(replica.db)
    await replica.deliver(
        [completed(monitor_id, 3, Outcome.UP), completed(monitor_id, 1), completed(monitor_id, 2)]
    )
    state = await state_of(replica.db, monitor_id)
    assert state.status == "up"  # type: ignore[attr-defined]
    events = await outbox_events(replica.db)
    assert [e.payload.get("current") for e in events if e.type == "monitor.status_changed"] == [
        "pending",
        "down",
        "up",
    ]


async def test_results_for_deleted_or_foreign_monitors_are_dropped(replica: Replica) -> None:
    deleted = await insert_monitor(replica.db, deleted_at=utcnow())
    mine = await insert_monitor(replica.db)
    await replica.deliver([completed(deleted, 0), completed(mine, 0, tenant="globex")])
    assert await stored_results(replica.db, deleted) == 0
    assert await stored_results(replica.db, mine) == 0
    assert await outbox_events(replica.db) == []


async def test_results_past_the_retention_window_are_pruned(replica: Replica) -> None:
    monitor_id = await insert_monitor(replica.db)
    await replica.deliver([completed(monitor_id, 0), completed(monitor_id, 1)])
    async with replica.db.sessions() as session, session.begin():
        await session.execute(
            update(check_results)
            .where(check_results.c.scheduled_at == T0)
            .values(finished_at=utcnow() - timedelta(hours=49))
        )
    await replica.evaluator.prune()
    assert await stored_results(replica.db, monitor_id) == 1


async def test_with_three_regions_one_failing_region_is_not_a_failure(replica: Replica) -> None:
    monitor_id = await insert_monitor(replica.db, regions=["eu", "us", "ap"])
    for second in range(4):
        await replica.deliver(
            [
                completed(monitor_id, second, Outcome.DOWN, region="eu"),
                completed(monitor_id, second, Outcome.UP, region="us"),
                completed(monitor_id, second, Outcome.UP, region="ap"),
            ]
        )
    state = await state_of(replica.db, monitor_id)
    assert state.status == "up"  # type: ignore[attr-defined]
    assert await stored_results(replica.db, monitor_id) == 12


async def test_with_three_regions_two_failing_regions_confirm_an_outage(replica: Replica) -> None:
    monitor_id = await insert_monitor(replica.db, regions=["eu", "us", "ap"])
    for second in range(2):
        # Results of one round arrive in separate batches, as they do from distant probes.
        await replica.deliver([completed(monitor_id, second, Outcome.DOWN, region="eu")])
        await replica.deliver([completed(monitor_id, second, Outcome.DOWN, region="us")])
    state = await state_of(replica.db, monitor_id)
    assert state.status == "down"  # type: ignore[attr-defined]
    # The third region's late answer to a decided round changes nothing.
    await replica.deliver([completed(monitor_id, 1, Outcome.UP, region="ap")])
    assert (await state_of(replica.db, monitor_id)).status == "down"  # type: ignore[attr-defined]
    events = await outbox_events(replica.db)
    assert [e.type for e in events].count("incident.opened") == 1


async def test_a_child_incident_is_linked_to_its_down_parent(replica: Replica) -> None:
    parent = await insert_monitor(replica.db, name="router")
    child = await insert_monitor(replica.db, name="web server", parent_id=parent)
    await replica.deliver([completed(parent, 0), completed(parent, 1)])
    await replica.deliver([completed(child, 0), completed(child, 1)])
    opened = {
        e.payload["monitor_id"]: e.payload
        for e in await outbox_events(replica.db)
        if e.type == "incident.opened"
    }
    assert opened[str(parent)]["parent_incident_id"] is None
    assert opened[str(child)]["parent_incident_id"] == opened[str(parent)]["incident_id"]


async def test_two_evaluators_racing_on_one_monitor_apply_each_result_once(
    pg_url: str,
) -> None:
    first, second = Replica(pg_url), Replica(pg_url)
    await first.db.prepare()
    try:
        monitor_id = await insert_monitor(first.db, failures_before_down=3)
        results = [completed(monitor_id, i) for i in range(12)]
        # Every batch reaches both replicas at once (a redelivery race). The batches go in
        # order, as one queue delivers them: racing the batches themselves against each other
        # could let the last one be applied first and skip the others as out of order.
        for i in range(0, len(results), 2):
            await asyncio.gather(*(r.deliver(results[i : i + 2]) for r in (first, second)))

        assert await stored_results(first.db, monitor_id) == len(results)
        state = await state_of(first.db, monitor_id)
        assert state.status == "down"  # type: ignore[attr-defined]
        assert state.last_scheduled_at == T0 + timedelta(seconds=11)  # type: ignore[attr-defined]
        events = await outbox_events(first.db)
        assert [e.type for e in events].count("incident.opened") == 1
        changes = [
            (e.payload["previous"], e.payload["current"])
            for e in events
            if e.type == "monitor.status_changed"
        ]
        assert changes == [("unknown", "pending"), ("pending", "down")]
        # Each result counted once, though both replicas received it.
        assert state.consecutive_failures == len(results)  # type: ignore[attr-defined]
    finally:
        await first.db.engine.dispose()
        await second.db.engine.dispose()


async def test_failures_in_a_maintenance_window_open_no_incident(replica: Replica) -> None:
    monitor_id = await insert_monitor(replica.db)
    async with replica.db.sessions() as session, session.begin():
        await session.execute(
            insert(maintenance_windows).values(
                id=uuid.uuid4(),
                tenant="acme",
                name="upgrade",
                monitor_ids=[str(monitor_id)],
                kind="once",
                starts_at=T0,
                ends_at=T0 + timedelta(seconds=10),
                timezone="UTC",
                created_at=utcnow(),
            )
        )
    await replica.deliver([completed(monitor_id, second) for second in range(5)])
    assert (await state_of(replica.db, monitor_id)).status == "maintenance"  # type: ignore[attr-defined]
    assert [e.type for e in await outbox_events(replica.db)] == ["monitor.status_changed"]
    await replica.deliver([completed(monitor_id, 11), completed(monitor_id, 12)])
    assert (await state_of(replica.db, monitor_id)).status == "down"  # type: ignore[attr-defined]
    events = await outbox_events(replica.db)
    assert [e.type for e in events].count("incident.opened") == 1
