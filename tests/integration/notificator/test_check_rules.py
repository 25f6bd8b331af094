"""Rules on check results (latency, certificate expiry), SLO burn rates, late heartbeats and
incident links, from events on the bus to a real webhook receiver."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from pingtower.common.events import (
    CheckCompleted,
    Envelope,
    IncidentOpened,
    MonitorCreated,
    MonitorStatusChanged,
    Outcome,
    SloBurnRateExceeded,
    Status,
)
from pingtower.notificator.store.tables import deliveries, inbox, monitors

from .conftest import (
    MakeReceiver,
    Running,
    Start,
    StartWebhooked,
    eventually,
    eventually_async,
    monitor_created,
    monitor_id_of,
    setup_webhook_rule,
    status_changed,
)


def check_completed(
    monitor_id: uuid.UUID,
    latency_ms: float | None = 100.0,
    *,
    outcome: Outcome = Outcome.UP,
    at: datetime | None = None,
    cert_expires_at: datetime | None = None,
    tenant: str = "acme",
) -> Envelope:
    at = at or datetime.now(UTC)
    return Envelope.wrap(
        CheckCompleted(
            check_id=uuid.uuid4(),
            monitor_id=monitor_id,
            region="default",
            scheduled_at=at,
            started_at=at,
            finished_at=at,
            outcome=outcome,
            latency_ms=latency_ms,
            cert_expires_at=cert_expires_at,
        ),
        producer="pinger",
        tenant=tenant,
    )


async def alerts_of(running: Running) -> list[dict[str, Any]]:
    response = await running.client.get("/api/v1/alerts", params={"status": "all"})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def delivery_count(running: Running) -> int:
    async with running.component.sessions() as session:
        return len((await session.execute(select(deliveries.c.id))).all())


async def test_three_slow_checks_in_a_row_alert_once_and_a_fast_one_resolves(
    database_url: str, start_webhooked: StartWebhooked
) -> None:
    running, receiver = await start_webhooked(
        database_url,
        events=["down", "recovered", "latency"],
        latency_threshold_ms=500,
        latency_checks=3,
    )
    created = monitor_created()
    monitor_id = monitor_id_of(created)
    start = datetime.now(UTC) - timedelta(minutes=10)
    await running.publish(created)
    # slow, slow, fast (breaks the run), slow, failed (neither), slow, slow: opens on the last.
    run: list[tuple[float | None, Outcome]] = [
        (800, Outcome.UP), (900, Outcome.UP), (120, Outcome.UP), (810, Outcome.DEGRADED),
        (None, Outcome.DOWN), (820, Outcome.UP), (830, Outcome.UP), (840, Outcome.UP),
    ]  # fmt: skip
    for minute, (latency, outcome) in enumerate(run):
        at = start + timedelta(minutes=minute)
        await running.publish(check_completed(monitor_id, latency, outcome=outcome, at=at))

    await eventually(lambda: len(receiver.accepted) == 1)
    slow = receiver.accepted[0]
    assert slow["kind"] == "latency"
    assert slow["latency_ms"] == 830  # the third slow success in a row, not the fourth
    assert slow["title"] == f"SLOW: {created.payload['name']} above 500 ms"
    # The latency alert lives beside a down alert of the same rule.
    await running.publish(status_changed(monitor_id, Status.UP, Status.DOWN))
    await eventually(lambda: len(receiver.accepted) == 2)
    assert receiver.accepted[1]["kind"] == "down"

    fast_at = start + timedelta(minutes=len(run))
    await running.publish(check_completed(monitor_id, 90, at=fast_at))
    await eventually(lambda: len(receiver.accepted) == 3)
    recovered = receiver.accepted[2]
    assert recovered["kind"] == "latency_ok"
    assert "answers in 90 ms again" in recovered["text"]
    problems = {a["problem"]: a["status"] for a in await alerts_of(running)}
    assert problems == {"latency": "resolved", "down": "open"}
    assert await delivery_count(running) == 3


async def test_an_expiring_certificate_is_told_once_per_threshold_and_renewal_closes_it(
    database_url: str, start_webhooked: StartWebhooked
) -> None:
    running, receiver = await start_webhooked(
        database_url, events=["cert_expiring"], cert_expiry_days=[30, 7]
    )
    created = monitor_created()
    monitor_id = monitor_id_of(created)
    now = datetime.now(UTC)
    expiry = now + timedelta(days=20)
    await running.publish(created)
    # Hourly checks of a certificate with 20 days left, in one batch and in several.
    await running.publish(
        *[
            check_completed(monitor_id, at=now + timedelta(hours=h), cert_expires_at=expiry)
            for h in range(5)
        ]
    )
    for h in range(5, 8):
        at = now + timedelta(hours=h)
        await running.publish(check_completed(monitor_id, at=at, cert_expires_at=expiry))
    await eventually(lambda: len(receiver.accepted) == 1)
    first = receiver.accepted[0]
    assert first["kind"] == "cert_expiring"
    assert first["threshold_days"] == 30
    # Fourteen days on it comes within 7 days: one more message, for that threshold.
    later = now + timedelta(days=14)
    for h in range(3):
        at = later + timedelta(hours=h)
        await running.publish(check_completed(monitor_id, at=at, cert_expires_at=expiry))
    await eventually(lambda: len(receiver.accepted) == 2)
    assert receiver.accepted[1]["threshold_days"] == 7
    # A renewed certificate closes the alert and tells nobody.
    renewed = later + timedelta(days=90)
    await running.publish(
        check_completed(monitor_id, at=later + timedelta(hours=5), cert_expires_at=renewed)
    )

    async def closed() -> bool:
        return [a["status"] for a in await alerts_of(running)] == ["resolved"]

    await eventually_async(closed)
    assert await delivery_count(running) == 2
    assert len(receiver.accepted) == 2


async def test_check_results_without_latency_or_certificate_rules_leave_no_trace(
    sqlite_url: str, start_webhooked: StartWebhooked
) -> None:
    running, receiver = await start_webhooked(sqlite_url)  # down and recovered only
    created = monitor_created()
    monitor_id = monitor_id_of(created)
    await running.publish(created)
    await running.publish(*[check_completed(monitor_id, 5000) for _ in range(50)])
    # A down afterwards goes through the same consumer: once it is told, the results were seen.
    await running.publish(status_changed(monitor_id, Status.UP, Status.DOWN))
    await eventually(lambda: len(receiver.accepted) == 1)
    async with running.component.sessions() as session:
        state = await session.scalar(
            select(monitors.c.check_state).where(monitors.c.monitor_id == monitor_id)
        )
    assert state is None
    assert await delivery_count(running) == 1
    # Nobody has a check rule: the results were dropped before any transaction.
    async with running.component.sessions() as session:
        claimed = (await session.scalars(select(inbox.c.message_id))).all()
    assert len(claimed) == 2  # monitor.created and monitor.status_changed


async def test_a_latency_rule_created_after_unwanted_results_sees_the_next_ones(
    sqlite_url: str, start_webhooked: StartWebhooked
) -> None:
    running, receiver = await start_webhooked(sqlite_url)  # no check rule yet
    channel_id = receiver.channel_id
    created = monitor_created()
    monitor_id = monitor_id_of(created)
    start = datetime.now(UTC) - timedelta(minutes=10)
    early = check_completed(monitor_id, 900, at=start)
    await running.publish(created, early)
    await running.publish(status_changed(monitor_id, Status.UP, Status.DOWN))
    await eventually(lambda: len(receiver.accepted) == 1)  # the batch with the result was done

    latency_rule = await running.client.post(
        "/api/v1/rules",
        json={
            "name": "slow",
            "events": ["latency"],
            "latency_threshold_ms": 500,
            "latency_checks": 2,
            "channel_ids": [channel_id],
        },
    )
    assert latency_rule.status_code == 201, latency_rule.text
    # Two slow results after the rule: the early one (skipped) does not count towards them.
    await running.publish(check_completed(monitor_id, 800, at=start + timedelta(minutes=1)))
    await running.publish(check_completed(monitor_id, 850, at=start + timedelta(minutes=2)))
    await eventually(lambda: len(receiver.accepted) == 2)
    slow = receiver.accepted[1]
    assert slow["kind"] == "latency"
    assert slow["latency_ms"] == 850
    async with running.component.sessions() as session:
        claimed = set((await session.scalars(select(inbox.c.message_id))).all())
    assert str(early.id) not in claimed


async def test_slo_burn_rates_reach_rules_of_their_tag_or_monitor_once(
    sqlite_url: str, start_webhooked: StartWebhooked
) -> None:
    running, receiver = await start_webhooked(sqlite_url, events=["slo"], tags=["prod"])
    prod_monitor = monitor_created(tags=["prod"])
    other_monitor = monitor_created(tags=["staging"])
    await running.publish(prod_monitor, other_monitor)

    def burning(monitor_id: uuid.UUID | None = None, tag: str | None = None) -> Envelope:
        return Envelope.wrap(
            SloBurnRateExceeded(
                slo_id=uuid.uuid4(),
                monitor_id=monitor_id,
                tag=tag,
                objective=0.999,
                long_window_seconds=3600,
                short_window_seconds=300,
                burn_rate_long=15.2,
                burn_rate_short=20.0,
                threshold=14.4,
            ),
            producer="statistics",
            tenant="acme",
        )

    by_tag = burning(tag="prod")
    by_monitor = burning(monitor_id=monitor_id_of(prod_monitor))
    await running.publish(by_tag, burning(tag="staging"), by_monitor)
    await running.publish(burning(monitor_id=monitor_id_of(other_monitor)))
    await running.publish(by_tag)  # redelivered: nothing more
    await eventually(lambda: len(receiver.accepted) == 2)
    titles = sorted(m["title"] for m in receiver.accepted)
    assert titles == sorted(
        ["SLO BURNING: tag prod", f"SLO BURNING: {prod_monitor.payload['name']}"]
    )
    assert all("15.2x too fast over 1h" in m["text"] for m in receiver.accepted)
    assert await delivery_count(running) == 2


async def test_a_late_heartbeat_is_told_as_late_and_linked_to_its_incident(
    sqlite_url: str, start_notificator: Start, make_receiver: MakeReceiver
) -> None:
    receiver = await make_receiver()
    running = await start_notificator(sqlite_url)
    # A rule for late heartbeats only: a heartbeat's failure or any other DOWN is not for it.
    await setup_webhook_rule(running.client, receiver.url, events=["heartbeat_late"])
    monitor_id = uuid.uuid4()
    created = Envelope.wrap(
        MonitorCreated(
            monitor_id=monitor_id,
            name="nightly backup",
            type="heartbeat",
            target="",
            interval_seconds=86_400,
        ),
        producer="pinger",
        tenant="acme",
    )
    incident_id = uuid.uuid4()
    late = Envelope.wrap(
        MonitorStatusChanged(
            monitor_id=monitor_id,
            previous=Status.UP,
            current=Status.DOWN,
            changed_at=datetime.now(UTC),
            incident_id=incident_id,
            error_kind="heartbeat_missed",
            error_message="no ping within the period and grace time",
        ),
        producer="pinger",
        tenant="acme",
    )
    other = monitor_created()
    await running.publish(other, status_changed(monitor_id_of(other), Status.UP, Status.DOWN))
    await running.publish(created, late)
    await eventually(lambda: len(receiver.accepted) == 1)
    message = receiver.accepted[0]
    assert message["title"] == "LATE: heartbeat nightly backup"
    assert "is LATE since" in message["text"]
    assert f"Incident: {incident_id}" in message["text"]
    assert [a["incident_id"] for a in await alerts_of(running)] == [str(incident_id)]


async def test_incident_opened_links_the_open_down_alert_that_had_no_incident(
    sqlite_url: str, start_webhooked: StartWebhooked
) -> None:
    running, receiver = await start_webhooked(sqlite_url)
    created = monitor_created()
    monitor_id = monitor_id_of(created)
    went_down = datetime.now(UTC)
    await running.publish(created, status_changed(monitor_id, Status.UP, Status.DOWN, went_down))
    await eventually(lambda: len(receiver.accepted) == 1)
    incident_id = uuid.uuid4()
    opened = IncidentOpened(incident_id=incident_id, monitor_id=monitor_id, started_at=went_down)
    await running.publish(Envelope.wrap(opened, producer="pinger", tenant="acme"))

    async def linked() -> bool:
        return [a["incident_id"] for a in await alerts_of(running)] == [str(incident_id)]

    await eventually_async(linked)


async def test_latency_and_certificate_events_need_their_thresholds(
    sqlite_url: str, start_webhooked: StartWebhooked
) -> None:
    running, receiver = await start_webhooked(
        sqlite_url, events=["cert_expiring"], cert_expiry_days=[7, 30, 7]
    )
    rule_id = receiver.rule_id
    rule = (await running.client.get(f"/api/v1/rules/{rule_id}")).json()
    assert rule["cert_expiry_days"] == [30, 7]
    assert rule["latency_threshold_ms"] is None
    no_threshold = await running.client.patch(
        f"/api/v1/rules/{rule_id}", json={"events": ["latency"]}
    )
    assert no_threshold.status_code == 422
    assert "latency_threshold_ms" in no_threshold.text
    both = await running.client.patch(
        f"/api/v1/rules/{rule_id}",
        json={"events": ["latency", "cert_expiring"], "latency_threshold_ms": 250},
    )
    assert both.status_code == 200, both.text
    assert both.json()["latency_checks"] == 3


async def test_slow_checks_of_a_monitor_in_maintenance_or_outside_the_rule_tell_nobody(
    sqlite_url: str, start_notificator: Start, make_receiver: MakeReceiver
) -> None:
    receiver = await make_receiver()
    running = await start_notificator(sqlite_url)
    watched, maintained, unwatched = monitor_created(), monitor_created(), monitor_created()
    await running.publish(watched, maintained, unwatched)
    ids = [monitor_id_of(m) for m in (watched, maintained, unwatched)]
    await setup_webhook_rule(
        running.client,
        receiver.url,
        events=["latency"],
        latency_threshold_ms=200,
        latency_checks=2,
        monitor_ids=[str(ids[0]), str(ids[1])],
    )
    await running.publish(status_changed(ids[1], Status.UP, Status.MAINTENANCE))
    start = datetime.now(UTC)
    for second in range(3):
        at = start + timedelta(seconds=second)
        await running.publish(*(check_completed(m, 900, at=at) for m in ids))
    await eventually(lambda: len(receiver.accepted) == 1)
    assert receiver.accepted[0]["monitor"]["id"] == str(ids[0])
    async with running.component.sessions() as session:
        states = dict(
            (await session.execute(select(monitors.c.monitor_id, monitors.c.check_state))).all()
        )
    # The maintained monitor's alert opened silently (its state advanced); the other is untouched.
    assert [state is not None for state in (states[i] for i in ids)] == [True, True, False]
    assert await delivery_count(running) == 1


async def test_a_deleted_latency_rule_closes_its_open_alerts_at_the_next_check(
    sqlite_url: str, start_webhooked: StartWebhooked
) -> None:
    running, receiver = await start_webhooked(
        sqlite_url, events=["latency"], latency_threshold_ms=200, latency_checks=1
    )
    channel_id = receiver.channel_id
    latency_rule = receiver.rule_id
    # Another rule on check results keeps the workspace on the check-rule path.
    other = await running.client.post(
        "/api/v1/rules",
        json={
            "name": "certs",
            "events": ["cert_expiring"],
            "cert_expiry_days": [7],
            "channel_ids": [channel_id],
        },
    )
    assert other.status_code == 201, other.text
    created = monitor_created()
    monitor_id = monitor_id_of(created)
    await running.publish(created, check_completed(monitor_id, 900))
    await eventually(lambda: len(receiver.accepted) == 1)
    assert [a["status"] for a in await alerts_of(running)] == ["open"]

    deleted = await running.client.delete(f"/api/v1/rules/{latency_rule}")
    assert deleted.status_code == 204
    await running.publish(check_completed(monitor_id, 900))

    async def closed() -> bool:
        return [a["status"] for a in await alerts_of(running)] == ["resolved"]

    await eventually_async(closed)
    async with running.component.sessions() as session:
        state = await session.scalar(
            select(monitors.c.check_state).where(monitors.c.monitor_id == monitor_id)
        )
    assert state is None
    assert len(receiver.accepted) == 1
