"""The scheduler: on time, spread, retry interval while PENDING, changes noticed, no burst after a
restart, and one leader at a time on PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, update

from pingtower.common.events import CheckJob, Envelope, utcnow
from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.settings import Settings
from pingtower.pinger.domain.schedule import next_run
from pingtower.pinger.scheduler import scheduler as scheduler_module
from pingtower.pinger.scheduler.scheduler import TICK_SECONDS, Scheduler
from pingtower.pinger.store.database import PingerDatabase
from pingtower.pinger.store.tables import monitor_states, monitors
from tests.integration.pinger.harness import eventually, insert_monitor


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Setup:
    def __init__(self, url: str) -> None:
        self.bus = InProcessBus()
        self.db = PingerDatabase(Settings(pinger_database_url=url), self.bus)
        self.clock = FakeClock()
        self.scheduler = Scheduler(self.db, self.bus, clock=self.clock)

    def drain_envelopes(self, region: str = "default") -> list[Envelope]:
        queue = self.bus._job_queue(region)
        envelopes = []
        while not queue.empty():
            envelopes.append(queue.get_nowait())
        return envelopes

    def drain(self, region: str = "default") -> list[CheckJob]:
        return [CheckJob.model_validate(e.payload) for e in self.drain_envelopes(region)]

    async def advance(self, seconds: float, step: float = 0.25) -> list[CheckJob]:
        end = self.clock.now + seconds
        while self.clock.now < end:
            self.clock.now = min(end, self.clock.now + step)
            await self.scheduler.publish_due()
        return self.drain()


@pytest.fixture
async def setup(sqlite_url: str) -> AsyncIterator[Setup]:
    one = Setup(sqlite_url)
    await one.db.prepare()
    yield one
    await one.db.engine.dispose()


async def test_each_monitor_runs_once_per_interval_with_a_deadline(setup: Setup) -> None:
    ids = [await insert_monitor(setup.db, interval_seconds=10) for _ in range(5)]
    await setup.scheduler.load_all()
    jobs = await setup.advance(30)
    for monitor_id in ids:
        mine = sorted((j for j in jobs if j.monitor_id == monitor_id), key=lambda j: j.scheduled_at)
        assert len(mine) == 3
        gaps = {
            (b.scheduled_at - a.scheduled_at).total_seconds() for a, b in itertools.pairwise(mine)
        }
        assert gaps == {10.0}
        assert all(j.deadline - j.scheduled_at == timedelta(seconds=10) for j in mine)


async def test_monitors_are_not_fired_together(setup: Setup) -> None:
    for _ in range(45):
        await insert_monitor(setup.db, interval_seconds=20)
    await setup.scheduler.load_all()
    jobs = await setup.advance(20)
    assert len(jobs) == 45
    per_second = Counter(int(j.scheduled_at.timestamp()) for j in jobs)
    assert max(per_second.values()) <= math.ceil(45 / 20) + 1


async def test_a_new_monitor_respreads_its_group_without_double_or_missed_runs(
    setup: Setup,
) -> None:
    ids = [await insert_monitor(setup.db, interval_seconds=10) for _ in range(6)]
    await setup.scheduler.load_all()
    jobs = await setup.advance(15)
    for _ in range(3):
        ids.append(await insert_monitor(setup.db, interval_seconds=10))
    await setup.scheduler.poll_changes()
    jobs += await setup.advance(30)
    for monitor_id in ids[:6]:
        mine = sorted(j.scheduled_at for j in jobs if j.monitor_id == monitor_id)
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(mine)]
        # Three monitors joined six: a slot moves by at most three of the old slots (5 s), so
        # there is never a second run within half an interval, nor a missed run.
        assert all(5 - 1e-6 <= gap <= 15 + 1e-6 for gap in gaps), gaps
        assert len(mine) in (4, 5)


async def test_a_restarted_scheduler_resumes_without_a_burst(setup: Setup) -> None:
    for _ in range(10):
        await insert_monitor(setup.db, interval_seconds=10)
    await setup.scheduler.load_all()
    first = await setup.advance(15)
    restarted = Scheduler(setup.db, setup.bus, clock=setup.clock)
    await restarted.load_all()
    assert await restarted.publish_due() == 0
    setup.scheduler = restarted
    second = await setup.advance(10)
    assert len(second) == 10
    previous = {j.monitor_id: j.scheduled_at for j in first}
    for job in second:
        assert job.scheduled_at - previous[job.monitor_id] in (
            timedelta(seconds=10),
            timedelta(seconds=20),
        )


async def test_a_pending_monitor_runs_at_its_retry_interval(setup: Setup) -> None:
    monitor_id = await insert_monitor(setup.db, interval_seconds=60, retry_interval_seconds=10)
    await setup.scheduler.load_all()
    assert len(await setup.advance(60)) == 1
    async with setup.db.sessions() as session, session.begin():
        await session.execute(
            update(monitor_states)
            .where(monitor_states.c.monitor_id == monitor_id)
            .values(status="pending", changed_at=utcnow())
        )
    await setup.scheduler.poll_changes()
    jobs = await setup.advance(60)
    assert len(jobs) == 6
    assert all(j.deadline - j.scheduled_at == timedelta(seconds=10) for j in jobs)


async def test_changes_are_noticed_by_polling(setup: Setup) -> None:
    kept = await insert_monitor(setup.db, interval_seconds=10)
    removed = await insert_monitor(setup.db, interval_seconds=10)
    paused = await insert_monitor(setup.db, interval_seconds=10)
    await setup.scheduler.load_all()
    added = await insert_monitor(setup.db, interval_seconds=10, target="http://127.0.0.1:1/new")
    now = utcnow()
    async with setup.db.sessions() as session, session.begin():
        await session.execute(
            update(monitors).where(monitors.c.id == removed).values(deleted_at=now, updated_at=now)
        )
        await session.execute(
            update(monitors).where(monitors.c.id == paused).values(paused=True, updated_at=now)
        )
        await session.execute(
            update(monitors)
            .where(monitors.c.id == kept)
            .values(target="http://127.0.0.1:2/moved", updated_at=now)
        )
    await setup.scheduler.poll_changes()
    jobs = await setup.advance(10)
    assert {j.monitor_id for j in jobs} == {kept, added}
    assert {j.target for j in jobs if j.monitor_id == kept} == {"http://127.0.0.1:2/moved"}


async def test_a_change_that_commits_long_after_its_timestamp_is_found_by_reconciling(
    setup: Setup,
) -> None:
    old = await insert_monitor(setup.db, interval_seconds=10)
    await setup.scheduler.load_all()
    await insert_monitor(setup.db, interval_seconds=10)  # moves the poll's watermark on
    await setup.scheduler.poll_changes()
    # Committed now, stamped a minute ago: a writer that waited that long for the lock.
    stamped = utcnow() - timedelta(minutes=1)
    late = await insert_monitor(
        setup.db, interval_seconds=10, created_at=stamped, updated_at=stamped
    )
    async with setup.db.sessions() as session, session.begin():
        await session.execute(
            update(monitors).where(monitors.c.id == old).values(deleted_at=stamped)
        )
    await setup.scheduler.poll_changes()
    assert late not in {j.monitor_id for j in await setup.advance(10)}, "the poll cannot see it"

    assert await setup.scheduler.reconcile() == 2
    ran = {j.monitor_id for j in await setup.advance(10)}
    assert late in ran
    assert old not in ran
    assert await setup.scheduler.reconcile() == 0, "nothing left to find"


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_a_reconciliation_after_one_that_found_nothing_still_finds_a_late_change(
    database: str, sqlite_url: str, make_pg_database: Callable[[], Awaitable[str]]
) -> None:
    # The second compares the stamps as the driver returns them with those the first found
    # equal (it parses only the ones that differ): a change must not hide behind that.
    one = Setup(sqlite_url if database == "sqlite" else await make_pg_database())
    await one.db.prepare()
    try:
        kept, changed = sorted([await insert_monitor(one.db, interval_seconds=10) for _ in "ab"])
        await one.scheduler.load_all()
        assert await one.scheduler.reconcile() == 0
        assert await one.scheduler.reconcile() == 0
        async with one.db.sessions() as session, session.begin():
            stamp = await session.scalar(
                select(monitors.c.updated_at).where(monitors.c.id == changed)
            )
            assert stamp is not None
            # A microsecond after the stamp the schedule holds: committed late, as before.
            await session.execute(
                update(monitors)
                .where(monitors.c.id == changed)
                .values(
                    target="http://127.0.0.1:2/moved", updated_at=stamp + timedelta(microseconds=1)
                )
            )
        assert await one.scheduler.reconcile() == 1
        jobs = await one.advance(10)
        assert {j.monitor_id: j.target for j in jobs}[changed] == "http://127.0.0.1:2/moved"
        assert {j.monitor_id for j in jobs} == {kept, changed}
        assert await one.scheduler.reconcile() == 0, "nothing left to find"
    finally:
        await one.db.engine.dispose()


async def test_reconciling_page_by_page_finds_every_late_change_and_keeps_the_rest(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scheduler_module, "RECONCILE_PAGE", 3)  # 11 monitors: four pages
    ids = [await insert_monitor(setup.db, interval_seconds=10) for _ in range(10)]
    await setup.scheduler.load_all()
    stamped = utcnow() - timedelta(minutes=1)  # committed late: only reconciling sees them
    late = await insert_monitor(
        setup.db, interval_seconds=10, created_at=stamped, updated_at=stamped
    )
    ordered = sorted(ids)
    gone, moved = ordered[2], ordered[3]  # the last of the first page, the first of the next
    async with setup.db.sessions() as session, session.begin():
        await session.execute(update(monitors).where(monitors.c.id == gone).values(paused=True))
        await session.execute(
            update(monitors)
            .where(monitors.c.id == moved)
            .values(target="http://127.0.0.1:2/moved", updated_at=stamped)
        )
    assert await setup.scheduler.reconcile() == 3
    jobs = await setup.advance(10)
    assert sorted(j.monitor_id for j in jobs) == sorted({*ids, late} - {gone})
    assert {j.target for j in jobs if j.monitor_id == moved} == {"http://127.0.0.1:2/moved"}
    assert await setup.scheduler.reconcile() == 0, "nothing left to find"


async def test_a_cron_monitor_runs_at_its_exact_times(setup: Setup) -> None:
    setup.clock.now = datetime(2027, 1, 15, 8, 0, 30, tzinfo=UTC).timestamp()
    await insert_monitor(setup.db, cron="*/2 * * * *", timezone="UTC", interval_seconds=60)
    await setup.scheduler.load_all()
    jobs = await setup.advance(300, step=1.0)
    assert [j.scheduled_at for j in jobs] == [
        datetime(2027, 1, 15, 8, minute, tzinfo=UTC) for minute in (2, 4)
    ]
    # A job is stale when the interval is over, even if the next cron run is later.
    assert all(j.deadline - j.scheduled_at == timedelta(seconds=60) for j in jobs)


async def test_heartbeat_monitors_get_no_jobs(setup: Setup) -> None:
    await insert_monitor(setup.db, type="heartbeat", target="push", interval_seconds=10)
    await setup.scheduler.load_all()
    assert await setup.advance(30) == []


async def test_a_monitor_in_several_regions_gets_a_job_per_region(setup: Setup) -> None:
    await insert_monitor(setup.db, interval_seconds=10, regions=["eu", "us"])
    await setup.scheduler.load_all()
    await setup.advance(10)
    assert len(setup.drain("eu")) == 1
    assert len(setup.drain("us")) == 1


async def test_one_scheduler_leads_and_another_takes_over_when_it_stops(pg_url: str) -> None:
    bus = InProcessBus()
    settings = Settings(pinger_database_url=pg_url)
    dbs = [PingerDatabase(settings, bus) for _ in range(2)]
    await dbs[0].prepare()
    await insert_monitor(dbs[0], interval_seconds=1, retry_interval_seconds=1)
    schedulers = [Scheduler(db, bus, poll_seconds=0.1, leader_retry_seconds=0.3) for db in dbs]
    try:
        for scheduler in schedulers:
            await scheduler.start()
        await eventually(lambda: any(s.is_leader for s in schedulers), timeout=5)
        await asyncio.sleep(0.5)
        assert sum(s.is_leader for s in schedulers) == 1
        leader = next(s for s in schedulers if s.is_leader)
        follower = next(s for s in schedulers if not s.is_leader)
        await leader.stop()
        stopped_at = time.monotonic()
        await eventually(lambda: follower.is_leader, timeout=10)
        assert time.monotonic() - stopped_at < 10
        queue = bus._job_queue("default")
        before = queue.qsize()
        await eventually(lambda: queue.qsize() > before, timeout=5)
    finally:
        for scheduler in schedulers:
            await scheduler.stop()
        for db in dbs:
            await db.engine.dispose()


async def set_status(db: PingerDatabase, monitor_ids: list[uuid.UUID], status: str) -> None:
    """What the evaluator writes on a transition (the scheduler polls `changed_at`)."""
    async with db.sessions() as session, session.begin():
        await session.execute(
            update(monitor_states)
            .where(monitor_states.c.monitor_id.in_(monitor_ids))
            .values(status=status, changed_at=utcnow())
        )


async def test_a_monitor_leaving_pending_is_not_checked_again_right_after_its_retry(
    setup: Setup,
) -> None:
    monitor_id = await insert_monitor(setup.db, interval_seconds=60, retry_interval_seconds=10)
    await setup.scheduler.load_all()
    await setup.advance(60)
    await set_status(setup.db, [monitor_id], "pending")
    await setup.scheduler.poll_changes()
    # The retry that decides (UP again) falls just before a run of the 60 s grid: the case in
    # which "the first grid point after now" ran the monitor twice within seconds.
    entry = setup.scheduler.entries[monitor_id]
    grid_point = next_run(setup.clock.now, 60, entry.slot)
    retry = next_run(grid_point - 10, 10, entry.retry_slot)
    if retry <= setup.clock.now + 1:
        grid_point += 60
        retry = next_run(grid_point - 10, 10, entry.retry_slot)
    retries = await setup.advance(retry + 0.3 - setup.clock.now)
    assert max(j.scheduled_at for j in retries).timestamp() == pytest.approx(retry)

    await set_status(setup.db, [monitor_id], "up")
    await setup.scheduler.poll_changes()
    after = await setup.advance(90)
    assert len(after) == 1, [j.scheduled_at for j in after]
    assert after[0].scheduled_at.timestamp() - retry >= 30  # at least half an interval later
    assert after[0].deadline - after[0].scheduled_at == timedelta(seconds=60)


async def test_a_poll_of_quiet_tables_reads_no_rows(setup: Setup) -> None:
    # Written ten minutes ago within a second (a bulk import): a poll that re-read the seconds
    # before the newest stamp read all of them, and every state row, twice a second.
    stamped = utcnow() - timedelta(minutes=10)
    ids = [
        await insert_monitor(setup.db, interval_seconds=10, created_at=stamped, updated_at=stamped)
        for _ in range(20)
    ]
    async with setup.db.sessions() as session, session.begin():
        await session.execute(update(monitor_states).values(changed_at=stamped))
    await setup.scheduler.load_all()
    assert await setup.scheduler.poll_changes() == 0
    assert await setup.scheduler.poll_changes() == 0

    added = await insert_monitor(setup.db, interval_seconds=10)
    await set_status(setup.db, ids[:1], "pending")
    assert await setup.scheduler.poll_changes() >= 3  # the monitor, its state, the PENDING
    assert added in setup.scheduler.entries
    assert setup.scheduler.entries[ids[0]].pending


async def test_row_changes_reconciling_and_status_changes_never_add_a_run(setup: Setup) -> None:
    """Each monitor runs exactly once in every interval-long window while its row is edited
    (same grid), reconciliation runs and its status changes between UP states: the suspects of
    the extra checks the schedule-keeping benchmark counted (that was its window's length)."""
    ids = [await insert_monitor(setup.db, interval_seconds=10) for _ in range(30)]
    await setup.scheduler.load_all()
    await setup.advance(10)
    start = setup.clock.now
    jobs: list[CheckJob] = []
    for round_ in range(6):
        edited = ids[round_ * 5 : round_ * 5 + 5]
        async with setup.db.sessions() as session, session.begin():
            await session.execute(
                update(monitors)
                .where(monitors.c.id.in_(edited))
                .values(target=f"http://127.0.0.1:9/{round_}", updated_at=utcnow())
            )
        await set_status(setup.db, edited, "up" if round_ % 2 else "degraded")
        jobs += await setup.advance(3.3)
        await setup.scheduler.poll_changes()
        jobs += await setup.advance(3.3)
        await setup.scheduler.reconcile()
        jobs += await setup.advance(10 - 6.6)
    for monitor_id in ids:
        mine = sorted(j.scheduled_at.timestamp() for j in jobs if j.monitor_id == monitor_id)
        windows = Counter(int((at - start) // 10) for at in mine)
        assert windows == dict.fromkeys(range(6), 1), (monitor_id, mine)
        assert all(b - a == pytest.approx(10) for a, b in itertools.pairwise(mine))


async def test_a_bulk_import_respreads_its_group_at_most_every_few_seconds(setup: Setup) -> None:
    old = [await insert_monitor(setup.db, interval_seconds=20) for _ in range(40)]
    await setup.scheduler.load_all()
    jobs = await setup.advance(20)
    polled_at: dict[uuid.UUID, float] = {}
    spread_at = set()
    for _ in range(12):  # a monitor added every second, as an import through the API does
        added = await insert_monitor(setup.db, interval_seconds=20)
        await setup.scheduler.poll_changes()
        polled_at[added] = setup.clock.now
        spread_at.add(setup.scheduler._spread_at[20])
        jobs += await setup.advance(1)
    assert len(spread_at) == 2, "twelve changes in 12 s: two even respreads, not twelve"
    jobs += await setup.advance(30)
    await setup.scheduler.poll_changes()  # the deferred respread
    # Each monitor's next run is on the new grid (a moved slot may put it just over an
    # interval after the last), so the interval after that one holds exactly one run each.
    jobs += await setup.advance(20)
    last = await setup.advance(20)

    for monitor_id, polled in polled_at.items():
        first = min(j.scheduled_at.timestamp() for j in jobs if j.monitor_id == monitor_id)
        assert polled < first <= polled + 20, "a new monitor runs within its interval"
    assert Counter(j.monitor_id for j in last) == dict.fromkeys([*old, *polled_at], 1)
    per_second = Counter(int(j.scheduled_at.timestamp()) for j in last)
    assert max(per_second.values()) <= math.ceil(52 / 20) + 1, "evenly spread again"
    for monitor_id in old:
        mine = sorted(j.scheduled_at.timestamp() for j in jobs + last if j.monitor_id == monitor_id)
        assert all(10 - 1e-6 <= b - a <= 30 + 1e-6 for a, b in itertools.pairwise(mine)), mine


def lateness_count() -> float:
    return REGISTRY.get_sample_value("pingtower_pinger_schedule_lateness_seconds_count") or 0.0


async def test_the_leader_wakes_once_a_tick_and_publishes_the_jobs_due_in_it_together(
    setup: Setup,
) -> None:
    # 100 monitors every second: one due every 10 ms, so two or three in each 25 ms tick.
    ids = [await insert_monitor(setup.db, interval_seconds=1) for _ in range(100)]
    await setup.scheduler.load_all()
    next_poll = setup.clock.now + 1_000
    await setup.advance(1)  # every monitor's first run
    start = setup.clock.now
    observed = lateness_count()
    ticks: list[tuple[float, list[Envelope]]] = []
    while setup.clock.now < start + 3:
        # What the leader's loop does: sleep until `wake_at`, publish what is due by then.
        wake = setup.scheduler.wake_at(next_poll)
        assert wake >= setup.clock.now + TICK_SECONDS - 1e-9
        setup.clock.now = wake
        await setup.scheduler.publish_due()
        ticks.append((wake, setup.drain_envelopes()))

    assert len(ticks) <= 3 / TICK_SECONDS + 1
    assert all(len(envelopes) >= 2 for _, envelopes in ticks)
    for woke, envelopes in ticks:
        for envelope in envelopes:
            late = woke - envelope.parse_as(CheckJob).scheduled_at.timestamp()
            assert 0 <= late <= TICK_SECONDS + 1e-6
    published = [envelope.parse_as(CheckJob) for _, envelopes in ticks for envelope in envelopes]
    for monitor_id in ids:  # none missed, none doubled
        mine = sorted(j.scheduled_at.timestamp() for j in published if j.monitor_id == monitor_id)
        assert len(mine) in (3, 4)
        assert all(b - a == pytest.approx(1) for a, b in itertools.pairwise(mine))
    # Lateness is observed once per tick, not once per job.
    assert lateness_count() - observed == len(ticks)


async def test_a_quiet_schedule_wakes_right_when_its_next_job_is_due(setup: Setup) -> None:
    await insert_monitor(setup.db, interval_seconds=60)
    await setup.scheduler.load_all()
    due = setup.scheduler.heap[0][0]
    assert due > setup.clock.now + TICK_SECONDS  # one monitor a minute: nothing to batch

    assert setup.scheduler.wake_at(next_poll=due + 10) == due
    assert setup.scheduler.wake_at(next_poll=setup.clock.now + 0.5) == setup.clock.now + 0.5


async def test_the_envelope_a_probe_gets_in_process_carries_the_jobs_contract(
    setup: Setup,
) -> None:
    monitor_id = await insert_monitor(
        setup.db,
        interval_seconds=10,
        settings={"expected_status": ["200-299"], "headers": {"X-Probe": "ü"}},
        regions=["eu", "us"],
    )
    await setup.scheduler.load_all()
    await setup.advance(20)

    for region in ("eu", "us"):
        envelopes = setup.drain_envelopes(region)
        assert len(envelopes) == 2
        for envelope in envelopes:
            job = envelope.parse_as(CheckJob)
            assert job is envelope.parse_as(CheckJob), "the scheduler's model, not validated again"
            assert job == CheckJob.model_validate(envelope.payload)
            assert (job.monitor_id, job.region, job.job_id) == (monitor_id, region, envelope.id)
            assert job.settings == {"expected_status": ["200-299"], "headers": {"X-Probe": "ü"}}
            assert job.deadline - job.scheduled_at == timedelta(seconds=10)
            assert Envelope.from_bytes(envelope.to_bytes()) == envelope
    assert len({e.id for r in ("eu", "us") for e in setup.drain_envelopes(r)}) == 0
