"""Several Notificator replicas on one PostgreSQL database: every message is sent exactly once,
and a crashed worker's claim is taken over when its lease expires."""

from __future__ import annotations

import asyncio
from collections import Counter

from sqlalchemy import func, select

from pingtower.common.events import Status
from pingtower.notificator.store.tables import delivery_attempts

from .conftest import (
    MakeReceiver,
    Start,
    eventually,
    eventually_async,
    monitor_created,
    monitor_id_of,
    setup_webhook_rule,
    spare_worker,
    status_changed,
)


async def test_two_replicas_racing_on_postgresql_send_each_message_exactly_once(
    pg_url: str, start_notificator: Start, make_receiver: MakeReceiver
) -> None:
    receiver = await make_receiver(fail_first=3)  # some retries, to race on re-claims too
    first = await start_notificator(pg_url)
    second = await start_notificator(pg_url)
    for replica in (first, second):
        replica.component.worker.batch = 4  # small batches: both workers get a share
    await setup_webhook_rule(first.client, receiver.url)
    monitors = [monitor_created() for _ in range(40)]
    downs = [status_changed(monitor_id_of(m), Status.UP, Status.DOWN) for m in monitors]
    # Every event reaches both replicas, as after a broker redelivery to another consumer.
    await asyncio.gather(first.publish(*monitors, *downs), second.publish(*monitors, *downs))

    await eventually(lambda: len(receiver.accepted) >= 40, timeout=20)
    await asyncio.sleep(0.5)
    copies = Counter(receiver.delivery_ids)
    assert len(copies) == 40
    assert set(copies.values()) == {1}
    assert sorted(m["monitor"]["id"] for m in receiver.accepted) == sorted(
        m.payload["monitor_id"] for m in monitors
    )
    async with first.component.sessions() as session:
        workers = await session.scalar(
            select(func.count(func.distinct(delivery_attempts.c.worker)))
        )
    assert workers == 2
    delivered = [
        e for e in first.published + second.published if e.type == "notification.delivered"
    ]
    assert len(delivered) == 40


async def test_a_crashed_workers_claim_is_taken_over_after_its_lease(
    database_url: str, start_notificator: Start, make_receiver: MakeReceiver
) -> None:
    receiver = await make_receiver()
    running = await start_notificator(database_url)
    component = running.component
    await component.worker.stop()
    await setup_webhook_rule(running.client, receiver.url)
    await running.new_monitor_goes_down()

    async def queued() -> bool:
        return len((await running.client.get("/api/v1/notifications")).json()["items"]) == 1

    await eventually_async(queued)

    crashed = spare_worker(
        running, lease_seconds=0.2, send_timeout_seconds=0.01, worker_id="crashed"
    )
    assert len(await crashed.claim()) == 1  # claimed, then the process "dies" before sending
    assert await component.worker.claim() == []  # the lease still holds

    component.worker.start()
    await eventually(lambda: len(receiver.accepted) == 1)
    await asyncio.sleep(0.3)
    assert len(receiver.accepted) == 1
    [entry] = (await running.client.get("/api/v1/notifications")).json()["items"]
    assert entry["status"] == "delivered"
    assert entry["attempts"] == 2


async def test_three_replicas_on_rabbitmq_and_postgresql_send_one_message_per_alert(
    pg_url: str,
    rabbitmq_url: str,
    namespace: str,
    start_notificator: Start,
    make_receiver: MakeReceiver,
) -> None:
    from pingtower.common.messaging.rabbitmq import RabbitMQBus

    receiver = await make_receiver(fail_first=2)
    replicas = [
        await start_notificator(pg_url, bus=RabbitMQBus(rabbitmq_url, namespace=namespace))
        for _ in range(3)
    ]
    await setup_webhook_rule(replicas[0].client, receiver.url)
    pinger = RabbitMQBus(rabbitmq_url, namespace=namespace)
    await pinger.start()
    try:
        monitors = [monitor_created() for _ in range(12)]
        await pinger.publish(monitors)
        downs = [status_changed(monitor_id_of(m), Status.UP, Status.DOWN) for m in monitors]
        await pinger.publish(downs)
        await pinger.publish(downs[:4])  # a producer's retry publishes some of them again
        await eventually(lambda: len(receiver.accepted) >= 12, timeout=20)
        ups = [status_changed(monitor_id_of(m), Status.DOWN, Status.UP) for m in monitors]
        await pinger.publish(ups)
        await eventually(lambda: len(receiver.accepted) >= 24, timeout=20)
    finally:
        await pinger.close()
    await asyncio.sleep(0.5)
    copies = Counter(receiver.delivery_ids)
    assert len(copies) == 24
    assert set(copies.values()) == {1}
    kinds = Counter((m["monitor"]["id"], m["kind"]) for m in receiver.accepted)
    assert set(kinds.values()) == {1}
    assert {kind for _, kind in kinds} == {"down", "recovered"}
