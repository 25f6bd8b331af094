"""A batch of monitor events is applied together (one locked read of its monitors' rows, one
insert, one executemany update): it must leave the same projection rows, alerts and deliveries
as the same events applied one at a time, on both databases."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from sqlalchemy import select, text

from pingtower.common.events import (
    Envelope,
    IncidentOpened,
    MonitorCreated,
    MonitorDeleted,
    MonitorStatusChanged,
    MonitorUpdated,
    Status,
    utcnow,
)
from pingtower.common.messaging.bus import BatchHandler
from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.notificator.service import NotificatorComponent
from pingtower.notificator.store.tables import alerts, channels, deliveries, monitors, rules

from .conftest import eventually_async, notificator_settings

TENANT = "acme"
CHANNEL = uuid.UUID("00000000-0000-4000-8000-0000000000c1")
EVERYTHING = uuid.UUID("00000000-0000-4000-8000-0000000000a1")
FLAPPY = uuid.UUID("00000000-0000-4000-8000-0000000000a2")
START = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


class Notificator:
    """One Notificator database with its consumer's inbox handler (not started: nothing is
    sent, so the deliveries stay as decided)."""

    def __init__(self, component: NotificatorComponent) -> None:
        self.component = component
        sessions = component.sessions
        self.handle: BatchHandler = component.inbox.handler(sessions, component.effects)

    async def one_by_one(self, events: list[Envelope]) -> None:
        for envelope in events:
            await self.handle([envelope])

    async def state(self) -> State:
        async with self.component.sessions() as session:
            rows = (await session.execute(select(monitors))).all()
            alert_rows = (await session.execute(select(alerts))).all()
            delivery_rows = (await session.execute(select(deliveries))).all()
        # An alert's id is drawn at random: its deliveries name it by what it is about.
        about = {a.id: (a.rule_id, a.monitor_id, a.problem, a.opened_at) for a in alert_rows}
        return State(
            monitors={r.monitor_id: {c: r._mapping[c] for c in MONITOR_COLUMNS} for r in rows},
            alerts=Counter(
                AlertState(
                    **{c: a._mapping[c] for c in ALERT_COLUMNS}, unresolved=a.resolved_at is None
                )
                for a in alert_rows
            ),
            deliveries=Counter(
                DeliveryState(
                    alert=about[d.alert_id],
                    **{c: d._mapping[c] for c in DELIVERY_COLUMNS},
                    context=tuple(
                        sorted((k, repr(v)) for k, v in d.context.items() if k != "alert_id")
                    ),
                )
                for d in delivery_rows
            ),
        )


# What the events leave, without what differs by nature between two runs: the times taken
# from the clock (`updated_at`, `created_at`, a deletion's `resolved_at`, a cancellation's
# `finished_at`) and the ids drawn at random.
MONITOR_COLUMNS = (
    "tenant", "name", "type", "target", "tags", "parent_id", "status", "status_changed_at",
    "recent_changes", "check_state",
)  # fmt: skip
ALERT_COLUMNS = (
    "rule_id", "monitor_id", "open_key", "problem", "severity", "status", "quiet_after",
    "opened_at", "error", "incident_id",
)  # fmt: skip
DELIVERY_COLUMNS = (
    "rule_id", "monitor_id", "channel_id", "kind", "sequence", "group_key", "status", "due_at",
    "attempts",
)  # fmt: skip


class AlertState(NamedTuple):
    rule_id: uuid.UUID
    monitor_id: uuid.UUID
    open_key: str | None
    problem: str
    severity: str
    status: str
    quiet_after: datetime | None
    opened_at: datetime
    error: str | None
    incident_id: uuid.UUID | None
    unresolved: bool


class DeliveryState(NamedTuple):
    alert: tuple[Any, ...]
    rule_id: uuid.UUID
    monitor_id: uuid.UUID
    channel_id: uuid.UUID
    kind: str
    sequence: int
    group_key: str | None
    status: str
    due_at: datetime
    attempts: int
    context: tuple[tuple[str, str], ...]


@dataclass
class State:
    monitors: dict[uuid.UUID, dict[str, Any]]
    alerts: Counter[AlertState]
    deliveries: Counter[DeliveryState]


async def prepared(url: str, data_dir: Path, *, add_rules: bool = True) -> NotificatorComponent:
    """A Notificator on `url` (migrated, not started: nothing is sent, so the deliveries stay
    as decided); `add_rules`: with one channel and two rules, every monitor's down, degraded
    and recovered with reminders, and flap damping for the monitors tagged "flappy"."""
    component = NotificatorComponent(notificator_settings(url, data_dir), InProcessBus())
    await component.prepare()
    if not add_rules:
        return component
    now = utcnow()
    async with component.sessions() as session, session.begin():
        await session.execute(
            channels.insert().values(
                id=CHANNEL, tenant=TENANT, name="hook", type="webhook",
                settings={"url": "http://127.0.0.1:9/hook"}, secrets=None, enabled=True,
                rate_limit_per_minute=None, quiet_hours=None, created_at=now, updated_at=now,
            )
        )  # fmt: skip
        for rule_id, tags, flap_threshold in ((EVERYTHING, [], 0), (FLAPPY, ["flappy"], 2)):
            await session.execute(
                rules.insert().values(
                    id=rule_id, tenant=TENANT, name=str(rule_id), monitor_ids=[], tags=tags,
                    events=["down", "degraded", "recovered"], channel_ids=[str(CHANNEL)],
                    delay_seconds=0, reminder_interval_seconds=60, reminder_count=2,
                    severity="critical", enabled=True, flap_threshold=flap_threshold,
                    flap_window_seconds=600, group_window_seconds=0,
                    escalation_channel_ids=[], escalate_after_seconds=0,
                    latency_threshold_ms=None, latency_checks=3, cert_expiry_days=[],
                    created_at=now, updated_at=now,
                )
            )  # fmt: skip
    return component


@pytest.fixture
async def notificators(
    make_database_url: Callable[[], Awaitable[str]], tmp_path: Path
) -> AsyncIterator[tuple[Notificator, Notificator]]:
    """Two fresh Notificators, each on its own database, with the same channel and rules."""
    made: list[NotificatorComponent] = []
    try:
        for n in range(2):
            made.append(await prepared(await make_database_url(), tmp_path / str(n)))
        yield Notificator(made[0]), Notificator(made[1])
    finally:
        for component in made:
            await component.engine.dispose()


def wrap(event: Any, tenant: str = TENANT) -> Envelope:
    return Envelope.wrap(event, producer="pinger", tenant=tenant)


def created(
    monitor_id: uuid.UUID,
    name: str = "api",
    tags: list[str] | None = None,
    parent_id: uuid.UUID | None = None,
    updated: bool = False,
) -> Envelope:
    kind = MonitorUpdated if updated else MonitorCreated
    return wrap(
        kind(
            monitor_id=monitor_id,
            name=name,
            type="http",
            target=f"https://{name}.example.com/",
            tags=tags or [],
            interval_seconds=30,
            parent_id=parent_id,
        )
    )


def changed(monitor_id: uuid.UUID, current: Status, second: int, tenant: str = TENANT) -> Envelope:
    return wrap(
        MonitorStatusChanged(
            monitor_id=monitor_id,
            previous=Status.UNKNOWN,
            current=current,
            changed_at=START + timedelta(seconds=second),
            error_message="refused" if current is Status.DOWN else None,
        ),
        tenant,
    )


def deleted(monitor_id: uuid.UUID) -> Envelope:
    return wrap(MonitorDeleted(monitor_id=monitor_id))


def incident(monitor_id: uuid.UUID) -> Envelope:
    return wrap(
        IncidentOpened(
            incident_id=uuid.uuid5(monitor_id, "incident"),
            monitor_id=monitor_id,
            started_at=START,
        )
    )


async def test_a_batch_of_every_kind_of_monitor_event_leaves_what_one_at_a_time_does(
    notificators: tuple[Notificator, Notificator],
) -> None:
    batched, single = notificators
    old, parent, child, early, again, flappy, other = (uuid.uuid4() for _ in range(7))
    before = [
        created(old, "old"),
        changed(old, Status.UP, 0),
        changed(old, Status.DOWN, 10),  # an open alert with pending reminders
        created(parent, "parent"),
    ]
    batch = [
        changed(old, Status.DOWN, 5),  # out of order: older than what was applied
        created(old, "old, renamed", updated=True),
        incident(old),
        changed(old, Status.UP, 20),  # resolves its alert, cancels the reminders
        created(child, "child", parent_id=parent),
        changed(parent, Status.DOWN, 21),
        changed(child, Status.DOWN, 22),  # its parent is down: no alert of its own
        changed(early, Status.DOWN, 23),  # before its creation: a placeholder, alerted
        created(early, "early"),  # fills the placeholder, keeps its status
        created(again, "again"),
        changed(again, Status.DOWN, 24),
        deleted(again),  # resolves the alert just opened
        changed(again, Status.UP, 25),  # a placeholder again
        created(again, "again, back"),
        created(flappy, "flappy", tags=["flappy"]),
        *(changed(flappy, s, 30 + n) for n, s in enumerate([Status.DOWN, Status.UP] * 2)),
        changed(flappy, Status.PAUSED, 40),  # no event kind: status only
        changed(parent, Status.UP, 41, tenant="other"),  # another workspace's: dropped
        created(other, "gone"),
        deleted(other),
    ]
    for notificator in notificators:
        await notificator.one_by_one(before)
    await batched.handle(batch)
    await single.one_by_one(batch)

    state = await batched.state()
    assert state == await single.state()
    rows = state.monitors
    assert other not in rows
    assert (rows[old]["name"], rows[old]["status"]) == ("old, renamed", "up")
    assert (rows[early]["name"], rows[early]["status"]) == ("early", "down")
    assert (rows[again]["name"], rows[again]["status"]) == ("again, back", "up")
    assert rows[parent]["status"] == "down"
    assert rows[flappy]["status"] == "paused"
    assert len(rows[flappy]["recent_changes"]) == 4
    open_alerts = {(a.rule_id, a.monitor_id, a.problem) for a in state.alerts if a.unresolved}
    assert open_alerts == {
        (EVERYTHING, parent, "down"),
        (EVERYTHING, early, "down"),
        (FLAPPY, flappy, "flapping"),
    }
    assert {a.incident_id for a in state.alerts if a.monitor_id == old} == {
        uuid.uuid5(old, "incident")
    }
    assert sum(n for d, n in state.deliveries.items() if d.status == "cancelled") >= 2


@pytest.mark.parametrize("seed", range(6))
async def test_random_batches_leave_what_their_events_one_at_a_time_do(
    notificators: tuple[Notificator, Notificator], seed: int
) -> None:
    """Random mixes of every monitor event over a few monitors (some with a parent among them,
    some flap-damped), cut into random batches."""
    rng = random.Random(seed)
    ids = [uuid.uuid4() for _ in range(5)]
    statuses = [Status.UP, Status.DOWN, Status.DEGRADED, Status.PAUSED, Status.PENDING]
    second = 0
    events: list[Envelope] = []
    for _ in range(120):
        monitor_id = rng.choice(ids)
        roll = rng.random()
        second += rng.randint(1, 20)
        if roll < 0.15:
            events.append(
                created(
                    monitor_id,
                    rng.choice(["a", "b", "c"]),
                    tags=rng.choice([[], ["flappy"], ["flappy", "web"]]),
                    parent_id=rng.choice([None, ids[0]]) if monitor_id != ids[0] else None,
                    updated=rng.random() < 0.5,
                )
            )
        elif roll < 0.2:
            events.append(deleted(monitor_id))
        elif roll < 0.23:
            events.append(incident(monitor_id))
        else:
            # now and then older than the monitor's last change, or another workspace's
            at = second - rng.choice([0, 0, 0, 0, 0, 0, 0, 30])
            tenant = TENANT if rng.random() < 0.95 else "other"
            events.append(changed(monitor_id, rng.choice(statuses), at, tenant))
    batched, single = notificators
    start = 0
    while start < len(events):
        size = rng.randint(1, 40)
        await batched.handle(events[start : start + size])
        start += size
    await single.one_by_one(events)
    assert await batched.state() == await single.state()


async def test_a_replicas_batch_waits_for_the_locks_of_anothers_on_the_same_monitor(
    pg_url: str, tmp_path: Path
) -> None:
    """Two replicas on one PostgreSQL database: a batch locks its monitors' rows before it reads
    their alerts, so the second replica's recovery sees the alert the first one's DOWN opens
    (still uncommitted when the recovery arrives) and resolves it."""
    first = await prepared(pg_url, tmp_path / "first")
    second = await prepared(pg_url, tmp_path / "second", add_rules=False)
    try:
        monitor_id = uuid.uuid4()
        await Notificator(first).one_by_one(
            [created(monitor_id), changed(monitor_id, Status.UP, 0)]
        )
        recovery: asyncio.Future[None] | None = None
        async with first.sessions() as session, session.begin():
            await first.effects(session, [changed(monitor_id, Status.DOWN, 10)])
            recovery = asyncio.ensure_future(
                Notificator(second).handle([changed(monitor_id, Status.UP, 20)])
            )
            await eventually_async(lambda: waiting_for_a_lock(first))
            assert not recovery.done()
        await asyncio.wait_for(recovery, 30)
        state = await Notificator(first).state()
        assert state.monitors[monitor_id]["status"] == "up"
        assert [(a.problem, a.status) for a in state.alerts] == [("down", "resolved")]
    finally:
        if recovery is not None and not recovery.done():
            recovery.cancel()
        for component in (first, second):
            await component.engine.dispose()


async def waiting_for_a_lock(component: NotificatorComponent) -> bool:
    """Whether a session of the database waits for a lock another one holds."""
    async with component.sessions() as session:
        waiting = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return bool(waiting)
