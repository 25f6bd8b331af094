"""The lateness watcher reads only the heartbeats due (`heartbeats.check_at`), on SQLite and
PostgreSQL: the ping API, monitor edits and the watcher itself set when it looks next; a poll
with nothing due writes nothing and waits for no writer; a heartbeat monitor created after the
scheduler started is watched from its next poll.

The watcher is driven here by hand, at chosen times, never as a background loop."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select, text, update

from pingtower.common.events import utcnow
from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.settings import Settings
from pingtower.pinger.domain.heartbeat import CronSchedule, expected_after
from pingtower.pinger.scheduler.heartbeats import HeartbeatWatcher
from pingtower.pinger.scheduler.scheduler import Scheduler
from pingtower.pinger.store.database import PingerDatabase
from pingtower.pinger.store.tables import heartbeats, monitors
from tests.integration.pinger.conftest import MakeUrl
from tests.integration.pinger.harness import eventually, outbox_events, running_pinger

SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)


@dataclass
class Running:
    client: httpx.AsyncClient
    db: PingerDatabase
    watcher: HeartbeatWatcher


@pytest.fixture
async def running(make_db_url: MakeUrl) -> AsyncIterator[Running]:
    settings = Settings(pinger_database_url=await make_db_url(), min_interval_seconds=1)
    async with running_pinger(settings, InProcessBus(), ["pinger-api"]) as (client, components):
        db = next(c for c in components if isinstance(c, PingerDatabase))
        watcher = HeartbeatWatcher(db)
        try:
            yield Running(client, db, watcher)
        finally:
            await watcher.close()


async def create(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"name": "nightly backup", "type": "heartbeat", **fields}
    response = await client.post("/api/v1/monitors", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def patch(client: httpx.AsyncClient, monitor_id: str, **fields: Any) -> None:
    response = await client.patch(f"/api/v1/monitors/{monitor_id}", json=fields)
    assert response.status_code == 200, response.text


async def heartbeat(db: PingerDatabase, monitor_id: str) -> Any:
    async with db.sessions() as session:
        return (
            await session.execute(
                select(heartbeats, monitors.c.created_at)
                .join(monitors, monitors.c.id == heartbeats.c.monitor_id)
                .where(heartbeats.c.monitor_id == uuid.UUID(monitor_id))
            )
        ).one()


async def late_reports(db: PingerDatabase, monitor_id: str) -> list[dict[str, Any]]:
    return [
        envelope.payload
        for envelope in await outbox_events(db)
        if envelope.type == "check.completed"
        and envelope.payload["monitor_id"] == monitor_id
        and envelope.payload["error_kind"] in ("heartbeat_missed", "heartbeat_run_too_long")
    ]


async def test_a_cron_heartbeat_is_late_at_its_runs_deadline_and_reported_once_per_run(
    running: Running,
) -> None:
    created = await create(
        running.client,
        cron="0 3 * * *",
        timezone="Europe/Berlin",
        settings={"grace_seconds": 600},
    )
    row = await heartbeat(running.db, created["id"])
    assert row.check_at is not None
    assert row.check_at <= utcnow(), "watched from the next poll"
    nightly = CronSchedule("0 3 * * *", "Europe/Berlin")
    first = expected_after(nightly, row.created_at) + timedelta(minutes=10)

    assert await running.watcher.report_late(utcnow()) == 0
    assert (await heartbeat(running.db, created["id"])).check_at == first
    assert await running.watcher.report_late(first - SECOND) == 0
    assert await running.watcher.report_late(first) == 1
    (report,) = await late_reports(running.db, created["id"])
    assert report["error_kind"] == "heartbeat_missed"
    assert "cron" in report["error_message"]

    second = expected_after(nightly, first) + timedelta(minutes=10)
    assert (await heartbeat(running.db, created["id"])).check_at == second
    assert await running.watcher.report_late(first + timedelta(hours=3)) == 0
    assert await running.watcher.report_late(second) == 1
    assert len(await late_reports(running.db, created["id"])) == 2


async def created_days_ago(db: PingerDatabase, monitor_id: str, days: int) -> None:
    """As if the monitor had been created `days` ago (and looked at from the next poll)."""
    async with db.sessions() as session, session.begin():
        key = uuid.UUID(monitor_id)
        created = await session.scalar(select(monitors.c.created_at).where(monitors.c.id == key))
        assert created is not None
        await session.execute(
            update(monitors)
            .where(monitors.c.id == key)
            .values(created_at=created - timedelta(days=days))
        )
        await session.execute(
            update(heartbeats).where(heartbeats.c.monitor_id == key).values(check_at=utcnow())
        )


async def test_a_cron_heartbeat_pinged_after_its_run_is_on_time_and_a_silent_one_late(
    running: Running,
) -> None:
    fields = {
        "cron": "0 3 * * *",
        "timezone": "America/New_York",
        "settings": {"grace_seconds": 3600},
    }
    silent = await create(running.client, name="silent", **fields)
    pinged = await create(running.client, name="pinged", **fields)
    for created in (silent, pinged):
        await created_days_ago(running.db, created["id"], 2)
    assert (await running.client.get(pinged["ping_url"])).status_code == 200
    row = await heartbeat(running.db, pinged["id"])
    nightly = CronSchedule("0 3 * * *", "America/New_York")
    deadline = expected_after(nightly, row.last_ping_at) + timedelta(hours=1)
    assert row.check_at == deadline, "the ping set the next look to its deadline"

    assert await running.watcher.report_late(utcnow()) == 1
    (report,) = await late_reports(running.db, silent["id"])
    assert report["error_kind"] == "heartbeat_missed"
    assert await late_reports(running.db, pinged["id"]) == []

    # (The silent one may be reported again meanwhile: at its next run's deadline.)
    await running.watcher.report_late(deadline - SECOND)
    assert await late_reports(running.db, pinged["id"]) == []
    await running.watcher.report_late(deadline)
    assert len(await late_reports(running.db, pinged["id"])) == 1


async def test_a_ping_moves_the_next_look_forward(running: Running) -> None:
    created = await create(running.client, interval_seconds=60, settings={"grace_seconds": 60})
    row = await heartbeat(running.db, created["id"])
    silent_deadline = row.created_at + 2 * MINUTE
    assert await running.watcher.report_late(row.created_at + SECOND) == 0
    assert (await heartbeat(running.db, created["id"])).check_at == silent_deadline

    assert (await running.client.get(created["ping_url"])).status_code == 200
    row = await heartbeat(running.db, created["id"])
    assert row.check_at == row.last_ping_at + 2 * MINUTE
    assert row.check_at > silent_deadline
    assert await running.watcher.report_late(silent_deadline) == 0
    assert await late_reports(running.db, created["id"]) == []

    # A run that started and does not finish is looked at once its grace time is over.
    assert (await running.client.get(f"{created['ping_url']}/start")).status_code == 200
    row = await heartbeat(running.db, created["id"])
    assert row.check_at == row.run_started_at + MINUTE
    assert await running.watcher.report_late(row.check_at) == 1
    (report,) = await late_reports(running.db, created["id"])
    assert report["error_kind"] == "heartbeat_run_too_long"


async def test_a_change_of_schedule_grace_or_pause_is_looked_at_again(running: Running) -> None:
    created = await create(running.client, interval_seconds=3600, settings={"grace_seconds": 60})
    monitor_id = created["id"]
    row = await heartbeat(running.db, monitor_id)
    start = row.created_at
    assert await running.watcher.report_late(start + SECOND) == 0
    assert (await heartbeat(running.db, monitor_id)).check_at == start + timedelta(minutes=61)

    # A shorter period: the next poll looks again, not the old deadline an hour away.
    await patch(running.client, monitor_id, interval_seconds=60, retry_interval_seconds=20)
    assert (await heartbeat(running.db, monitor_id)).check_at <= utcnow()
    assert await running.watcher.report_late(start + 2 * MINUTE) == 1

    # A longer grace: no longer late; looked at again at the new deadline.
    await patch(running.client, monitor_id, settings={"grace_seconds": 7200})
    assert await running.watcher.report_late(start + 2 * MINUTE + SECOND) == 0
    new_deadline = start + MINUTE + timedelta(hours=2)
    assert (await heartbeat(running.db, monitor_id)).check_at == new_deadline

    # A cron schedule instead of the period.
    await patch(running.client, monitor_id, cron="30 * * * *", timezone="Asia/Kolkata")
    assert await running.watcher.report_late(start + 3 * MINUTE) == 0
    half_past = expected_after(CronSchedule("30 * * * *", "Asia/Kolkata"), start)
    assert (await heartbeat(running.db, monitor_id)).check_at == half_past + timedelta(hours=2)

    # Paused: not watched at all; resumed: looked at again from the next poll.
    assert (await running.client.post(f"/api/v1/monitors/{monitor_id}/pause")).is_success
    assert await running.watcher.report_late(start + timedelta(days=1)) == 0
    assert (await heartbeat(running.db, monitor_id)).check_at is None
    assert (await running.client.post(f"/api/v1/monitors/{monitor_id}/resume")).is_success
    assert (await heartbeat(running.db, monitor_id)).check_at is not None
    assert await running.watcher.report_late(start + timedelta(days=1)) == 1


async def test_a_poll_with_nothing_due_writes_nothing(running: Running) -> None:
    created = await create(running.client, interval_seconds=3600)
    engine = running.db.engine.sync_engine
    statements: list[str] = []
    begins: list[object] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement.upper())

    def begun(conn: Any) -> None:
        begins.append(conn)

    event.listen(engine, "before_cursor_execute", record)
    event.listen(engine, "begin", begun)
    try:
        # Due (just created): one write transaction that sets its next look.
        assert await running.watcher.report_late(utcnow()) == 0
        assert any(s.startswith("UPDATE HEARTBEATS") for s in statements)
        statements.clear()
        begins.clear()

        assert await running.watcher.report_late(utcnow()) == 0
        assert not any(
            "FOR UPDATE" in s or "FOR NO KEY UPDATE" in s or not s.lstrip().startswith("SELECT")
            for s in statements
        ), statements
        if running.db.dialect == "sqlite":
            # Read through the read-only engine: no BEGIN IMMEDIATE on the writers' engine.
            assert begins == []
            assert statements == []
    finally:
        event.remove(engine, "before_cursor_execute", record)
        event.remove(engine, "begin", begun)
    assert (await heartbeat(running.db, created["id"])).check_at > utcnow()


async def test_a_poll_with_nothing_due_does_not_wait_for_a_writer(running: Running) -> None:
    await create(running.client, interval_seconds=3600)
    assert await running.watcher.report_late(utcnow()) == 0  # its next look: in an hour
    async with running.db.engine.connect() as holder:
        if running.db.dialect == "sqlite":
            # The Pinger database's write lock (BEGIN IMMEDIATE), as the evaluator holds it.
            await holder.execute(text("UPDATE heartbeats SET last_ping_at = last_ping_at"))
        else:
            # Lets plain reads through, and blocks any row lock or write on the table.
            await holder.execute(text("LOCK TABLE heartbeats IN EXCLUSIVE MODE"))
        try:
            async with asyncio.timeout(5):
                for _ in range(3):
                    assert await running.watcher.report_late(utcnow()) == 0
        finally:
            await holder.rollback()


async def test_a_heartbeat_created_after_the_scheduler_started_is_watched_without_waiting(
    running: Running,
) -> None:
    scheduler = Scheduler(running.db, InProcessBus())
    try:
        await scheduler.load_all()
        scheduler._next_reconcile = float("inf")  # no reconciliation in this test
        created = await create(running.client, interval_seconds=1, settings={"grace_seconds": 1})

        async def reported() -> list[dict[str, Any]]:
            scheduler._next_poll = 0.0
            await scheduler.lead_once()
            return await late_reports(running.db, created["id"])

        (report,) = await eventually(reported, timeout=15, interval=0.2)
        assert report["error_kind"] == "heartbeat_missed"
        assert scheduler._reconciling is None
    finally:
        await scheduler.stop()


async def test_a_paused_or_deleted_heartbeat_is_not_looked_at_again(running: Running) -> None:
    paused = await create(running.client, interval_seconds=60, paused=True)
    deleted = await create(running.client, interval_seconds=60)
    response = await running.client.delete(f"/api/v1/monitors/{deleted['id']}")
    assert response.status_code == 204
    later = utcnow() + timedelta(days=2)
    assert await running.watcher.report_late(later) == 0
    for monitor_id in (paused["id"], deleted["id"]):
        assert (await heartbeat(running.db, monitor_id)).check_at is None
    assert not await running.watcher.any_due(later)


async def test_a_heartbeats_cron_and_time_zone_are_validated_and_kept(running: Running) -> None:
    created = await create(running.client, cron="15 4 * * 1-5", timezone="Europe/Berlin")
    assert (created["cron"], created["timezone"]) == ("15 4 * * 1-5", "Europe/Berlin")
    for fields, field in (
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "0 3 * * *", "timezone": "Mars/Olympus_Mons"}, "timezone"),
    ):
        body = {"name": "bad", "type": "heartbeat", **fields}
        response = await running.client.post("/api/v1/monitors", json=body)
        assert response.status_code == 422, response.text
        assert [error["field"] for error in response.json()["errors"]] == [field]
    response = await running.client.patch(
        f"/api/v1/monitors/{created['id']}", json={"cron": "not cron"}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "cron"


async def test_a_heartbeat_a_ping_holds_is_left_to_that_ping_on_postgresql(
    make_pg_database: Callable[[], Awaitable[str]],
) -> None:
    """PostgreSQL lets the watcher and pings run at once: a due row another transaction holds
    is skipped (that transaction sets its next look), not waited for nor overwritten."""
    settings = Settings(pinger_database_url=await make_pg_database(), min_interval_seconds=1)
    async with running_pinger(settings, InProcessBus(), ["pinger-api"]) as (client, components):
        db = next(c for c in components if isinstance(c, PingerDatabase))
        watcher = HeartbeatWatcher(db)
        try:
            held = await create(client, name="held", interval_seconds=60)
            free = await create(client, name="free", interval_seconds=60)
            later = utcnow() + timedelta(hours=1)
            async with db.engine.connect() as holder:
                await holder.execute(
                    update(heartbeats)
                    .where(heartbeats.c.monitor_id == uuid.UUID(held["id"]))
                    .values(last_ping_at=utcnow())
                )
                async with asyncio.timeout(5):
                    assert await watcher.report_late(later) == 1
                await holder.rollback()
            assert await late_reports(db, held["id"]) == []
            assert len(await late_reports(db, free["id"])) == 1
            assert await watcher.report_late(later) == 1, "the held one, once released"
            assert len(await late_reports(db, held["id"])) == 1
        finally:
            await watcher.close()
