"""The scheduler on the real broker: a tick's due jobs go out together and are confirmed when
`publish_due` returns; jobs the broker does not take are retried, then counted, never silently
lost, and they do not hold back the others."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from pingtower.common.events import CheckJob, Envelope
from pingtower.common.messaging.rabbitmq import RabbitMQBus
from pingtower.common.settings import Settings
from pingtower.pinger.scheduler.scheduler import Scheduler
from pingtower.pinger.store.database import PingerDatabase
from tests.integration.common.broker import Broker
from tests.integration.common.test_rabbitmq_bus import events_of
from tests.integration.pinger.harness import insert_monitor

pytestmark = pytest.mark.rabbitmq


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def counted(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


@pytest.fixture
async def broker(rabbitmq_url: str, namespace: str) -> AsyncIterator[Broker]:
    broker = Broker(rabbitmq_url, namespace)
    yield broker
    await broker.clean_up()


@pytest.fixture
async def bus(broker: Broker) -> RabbitMQBus:
    bus = broker.bus()
    await bus.start()
    return bus


@pytest.fixture
async def db(sqlite_url: str, bus: RabbitMQBus) -> AsyncIterator[PingerDatabase]:
    database = PingerDatabase(Settings(pinger_database_url=sqlite_url), bus)
    await database.prepare()
    yield database
    await database.engine.dispose()
    await bus.close()


async def test_a_ticks_due_jobs_are_confirmed_in_the_queue_when_publish_due_returns(
    broker: Broker, bus: RabbitMQBus, db: PingerDatabase
) -> None:
    clock = FakeClock()
    scheduler = Scheduler(db, bus, clock=clock)
    for _ in range(300):
        await insert_monitor(db, interval_seconds=10)
    await scheduler.load_all()
    published = counted("pingtower_pinger_jobs_published_total")

    clock.now += 10  # every monitor's slot comes due in this one tick
    assert await scheduler.publish_due() == 300

    # 16 jobs to a message (packing.py).
    assert await broker.ready_count(bus.job_queue_name("default")) == 19
    assert len(events_of(await broker.take_all(bus.job_queue_name("default")))) == 300
    assert counted("pingtower_pinger_jobs_published_total") - published == 300


async def test_jobs_the_broker_does_not_take_are_retried_then_counted_and_the_rest_go(
    broker: Broker, bus: RabbitMQBus, db: PingerDatabase
) -> None:
    clock = FakeClock()
    scheduler = Scheduler(db, bus, clock=clock)
    for _ in range(3):
        await insert_monitor(db, interval_seconds=10, regions=["eu"])
    for _ in range(2):
        await insert_monitor(db, interval_seconds=10, regions=["us"])
    await scheduler.load_all()
    clock.now += 10
    assert await scheduler.publish_due() == 5  # declares both regions' queues
    channel = await broker.channel()
    await channel.queue_delete(bus.job_queue_name("eu"))  # nothing routes "eu" now
    assert len(events_of(await broker.take_all(bus.job_queue_name("us")))) == 2
    published = counted("pingtower_pinger_jobs_published_total")
    unpublished = counted("pingtower_pinger_jobs_unpublished_total")

    clock.now += 15  # the first tick was late for all of them: their next slots spread further
    assert await scheduler.publish_due() == 5

    assert counted("pingtower_pinger_jobs_unpublished_total") - unpublished == 3
    assert counted("pingtower_pinger_jobs_published_total") - published == 2
    assert len(events_of(await broker.take_all(bus.job_queue_name("us")))) == 2


async def test_a_job_reaches_the_broker_as_the_bytes_of_the_job_built_from_scratch(
    broker: Broker, bus: RabbitMQBus, db: PingerDatabase
) -> None:
    clock = FakeClock()
    scheduler = Scheduler(db, bus, clock=clock)
    settings = {"expected_status": ["200-299"], "headers": {"X-Probe": "ü"}}
    monitor_id = await insert_monitor(
        db, interval_seconds=10, target="http://127.0.0.1:9/é", settings=settings
    )
    await scheduler.load_all()
    clock.now += 20  # two runs: the second from the template the first one built
    assert await scheduler.publish_due() == 1
    clock.now += 15  # the next grid point is 5 to 15 s after a late run
    assert await scheduler.publish_due() == 1

    messages = await broker.take_all(bus.job_queue_name("default"))

    assert len(messages) == 2
    for message in messages:
        received = Envelope.from_bytes(message.body)
        job = received.parse_as(CheckJob)
        # The job as the scheduler built it before templates: validated and dumped whole.
        scratch = Envelope.wrap(
            CheckJob(
                job_id=job.job_id,
                monitor_id=monitor_id,
                check_type="http",
                target="http://127.0.0.1:9/é",
                settings=settings,
                timeout_seconds=5.0,
                scheduled_at=job.scheduled_at,
                deadline=job.scheduled_at + timedelta(seconds=10),
                region="default",
            ),
            producer="pinger.scheduler",
            tenant="acme",
            occurred_at=job.scheduled_at,
            id=received.id,
        )
        assert message.body == scratch.to_bytes()
        assert message.message_id == str(received.id)
    assert messages[0].body != messages[1].body
