"""The leader's wake-ups: a reconciliation read a page per wake-up, heartbeat monitors known
without jobs, a heap without more than a fifth of stale items after a respread, and one poll
statement for stamps and states on both databases."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from pingtower.common.events import utcnow
from pingtower.pinger.scheduler import scheduler as scheduler_module
from pingtower.pinger.scheduler.scheduler import RESPREAD_SECONDS
from pingtower.pinger.store.tables import monitor_states, monitors
from tests.integration.pinger.harness import insert_monitor
from tests.integration.pinger.test_scheduler import Setup


@pytest.fixture
async def setup(sqlite_url: str) -> AsyncIterator[Setup]:
    one = Setup(sqlite_url)
    await one.db.prepare()
    yield one
    await one.db.engine.dispose()


async def set_row(setup: Setup, monitor_id: uuid.UUID, **values: Any) -> None:
    async with setup.db.sessions() as session, session.begin():
        await session.execute(update(monitors).where(monitors.c.id == monitor_id).values(**values))


async def test_the_leader_reads_one_page_of_a_reconciliation_per_wake_up(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scheduler_module, "RECONCILE_PAGE", 3)  # 7 monitors: three pages
    for _ in range(7):
        await insert_monitor(setup.db, interval_seconds=10)
    scheduler = setup.scheduler
    await scheduler.load_all()
    scheduler._next_poll = setup.clock.now + 3600  # no poll in this test
    scheduler._next_reconcile = setup.clock.now + 30
    await scheduler.lead_once()
    assert scheduler._reconciling is None, "not due yet"

    setup.clock.now += 30
    pages = 0
    while True:
        await scheduler.lead_once()
        pages += 1
        if scheduler._reconciling is None:
            break
        # Between two pages the leader sleeps one tick at most, not until its next poll.
        assert scheduler.wake_at(scheduler._next_poll) <= setup.clock.now + 0.025 + 1e-9
        assert pages < 10
    assert pages == 3
    assert scheduler._next_reconcile == setup.clock.now + scheduler.reconcile_seconds


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_what_changes_between_two_pages_of_a_reconciliation_is_kept_or_found(
    database: str,
    sqlite_url: str,
    make_pg_database: Callable[[], Awaitable[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(scheduler_module, "RECONCILE_PAGE", 3)
    setup = Setup(sqlite_url if database == "sqlite" else await make_pg_database())
    await setup.db.prepare()
    try:
        await changes_between_pages(setup)
    finally:
        await setup.db.engine.dispose()


async def changes_between_pages(setup: Setup) -> None:
    ids = sorted([await insert_monitor(setup.db, interval_seconds=10) for _ in range(8)])
    scheduler = setup.scheduler
    await scheduler.load_all()
    assert await scheduler._reconcile_page() is None  # the first page is read
    # Below every id read so far: no later page of this round can find it. The poll applies it
    # and the round must not take it for gone.
    added = await insert_monitor(setup.db, id=uuid.UUID(int=1), interval_seconds=10)
    await scheduler.poll_changes()
    assert added in scheduler.entries
    # Deleted with its stamp unchanged (a late commit the poll cannot see), in a page to come.
    await set_row(setup, ids[-1], deleted_at=utcnow() - timedelta(minutes=1))
    await scheduler.poll_changes()
    assert ids[-1] in scheduler.entries
    found = None
    for _ in range(5):
        found = await scheduler._reconcile_page()
        if found is not None:
            break
    assert found == 1, "the deleted monitor, nothing else"
    assert set(scheduler.entries) == {*ids[:-1], added}
    jobs = await setup.advance(10)
    assert sorted(j.monitor_id for j in jobs) == sorted({*ids[:-1], added})
    assert await scheduler.reconcile() == 0, "nothing left to find"


async def test_heartbeat_monitors_are_known_to_the_leader_without_jobs(setup: Setup) -> None:
    """Heartbeat monitors get no jobs; the leader keeps them as known (`unscheduled`) so that a
    reconciliation does not read them again as missed every round. The lateness watcher does
    not depend on it (tests/integration/pinger/test_heartbeat_watcher.py)."""
    scheduler = setup.scheduler

    async def wake_for_a_poll() -> None:
        scheduler._next_poll = setup.clock.now
        await scheduler.lead_once()

    await insert_monitor(setup.db, interval_seconds=10)
    await scheduler.load_all()
    scheduler._next_reconcile = setup.clock.now + 3600
    await wake_for_a_poll()
    assert scheduler.unscheduled == {}

    heartbeat = await insert_monitor(setup.db, type="heartbeat", interval_seconds=60)
    await wake_for_a_poll()
    assert heartbeat in scheduler.unscheduled
    assert heartbeat not in scheduler.entries
    assert await scheduler.reconcile() == 0, "known: not missed"

    await set_row(setup, heartbeat, paused=True, updated_at=utcnow())
    await wake_for_a_poll()
    assert heartbeat not in scheduler.unscheduled

    # Committed late (stamped a minute ago): the poll misses it, the reconciliation finds it.
    stamped = utcnow() - timedelta(minutes=1)
    late = await insert_monitor(
        setup.db, type="heartbeat", interval_seconds=60, created_at=stamped, updated_at=stamped
    )
    await wake_for_a_poll()
    assert late not in scheduler.unscheduled
    assert await scheduler.reconcile() == 1
    assert late in scheduler.unscheduled
    assert await scheduler.reconcile() == 0, "found once, then known"
    # Deleted with its stamp unchanged: the next reconciliation no longer finds it active.
    await set_row(setup, late, deleted_at=stamped)
    await scheduler.reconcile()
    assert scheduler.unscheduled == {}


async def test_a_respread_of_a_whole_group_leaves_no_stale_items_and_no_double_runs(
    setup: Setup,
) -> None:
    ids = [await insert_monitor(setup.db, interval_seconds=10) for _ in range(200)]
    scheduler = setup.scheduler
    await scheduler.load_all()
    first = await setup.advance(RESPREAD_SECONDS)
    ids.append(await insert_monitor(setup.db, interval_seconds=10))
    await scheduler.poll_changes()  # one more member: every slot moves, every run is pushed again
    entries = set(map(id, scheduler.entries.values()))
    assert len(scheduler.heap) == len(scheduler.entries), "the stale items were dropped"
    assert {id(entry) for _, _, entry in scheduler.heap} == entries
    assert all(entry.queued == seq for _, seq, entry in scheduler.heap)
    second = await setup.advance(10)
    assert sorted(j.monitor_id for j in second) == sorted(ids)
    last = {j.monitor_id: j.scheduled_at for j in first}
    for job in second:
        if job.monitor_id in last:  # never twice within half an interval
            assert job.scheduled_at - last[job.monitor_id] >= timedelta(seconds=5)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_one_poll_applies_changed_rows_and_pending_states(
    database: str, sqlite_url: str, make_pg_database: Callable[[], Awaitable[str]]
) -> None:
    one = Setup(sqlite_url if database == "sqlite" else await make_pg_database())
    await one.db.prepare()
    try:
        moved, failing = [await insert_monitor(one.db, interval_seconds=10) for _ in "ab"]
        await one.scheduler.load_all()
        now = utcnow()
        await set_row(one, moved, target="http://127.0.0.1:2/moved", updated_at=now)
        async with one.db.sessions() as session, session.begin():
            await session.execute(
                update(monitor_states)
                .where(monitor_states.c.monitor_id == failing)
                .values(status="pending", changed_at=now)
            )
        assert await one.scheduler.poll_changes() >= 2  # the stamp and the state
        assert one.scheduler.entries[failing].pending
        assert not one.scheduler.entries[moved].pending
        jobs = await one.advance(10)
        assert {j.monitor_id: j.target for j in jobs}[moved] == "http://127.0.0.1:2/moved"
    finally:
        await one.db.engine.dispose()
