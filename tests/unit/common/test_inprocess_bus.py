"""The embedded mode's bus behaves like the RabbitMQ topology it stands in for: routing by topic,
competing handlers sharing a queue, batches, redelivery and dead-lettering."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence

import pytest
from prometheus_client import REGISTRY

from pingtower.common.events import Envelope, MonitorDeleted
from pingtower.common.messaging.bus import deliver_batch
from pingtower.common.messaging.inprocess import InProcessBus


def event(event_type: str = "monitor.deleted") -> Envelope:
    return Envelope(
        type=event_type,
        producer="test",
        tenant="t",
        payload=MonitorDeleted(monitor_id=uuid.uuid4()).model_dump(mode="json"),
    )


async def eventually(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    """Wait (bounded) until `condition` holds; fail the test if it never does."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


class Recorder:
    """A batch handler that remembers every batch it was given."""

    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[list[Envelope]] = []
        self.delay = delay

    async def __call__(self, batch: Sequence[Envelope]) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.batches.append(list(batch))

    @property
    def received(self) -> list[Envelope]:
        return [envelope for batch in self.batches for envelope in batch]

    @property
    def types(self) -> list[str]:
        return [envelope.type for envelope in self.received]


@pytest.fixture
async def bus() -> AsyncIterator[InProcessBus]:
    bus = InProcessBus(delivery_limit=3)
    yield bus
    await bus.close()


async def test_each_consumer_gets_the_events_its_routing_keys_match(bus: InProcessBus) -> None:
    monitors, checks, everything = Recorder(), Recorder(), Recorder()
    bus.subscribe("statistics.monitors", ["monitor.*"], monitors)
    bus.subscribe("notificator.checks", ["check.completed"], checks)
    bus.subscribe("audit.all", ["#"], everything)
    await bus.start()

    published = [event("monitor.created"), event("check.completed"), event("incident.opened")]
    await bus.publish(published)

    await eventually(lambda: len(everything.received) == 3)
    await eventually(lambda: len(monitors.received) == 1 and len(checks.received) == 1)
    await asyncio.sleep(0.05)  # nothing else trickles in
    assert monitors.types == ["monitor.created"]
    assert checks.types == ["check.completed"]
    assert everything.types == ["monitor.created", "check.completed", "incident.opened"]


async def test_an_event_matching_several_keys_of_one_consumer_arrives_once(
    bus: InProcessBus,
) -> None:
    handler = Recorder()
    bus.subscribe("notificator.events", ["monitor.*", "#.status_changed", "#"], handler)
    await bus.start()
    await bus.publish([event("monitor.status_changed")])
    await eventually(lambda: len(handler.received) == 1)
    await asyncio.sleep(0.05)
    assert len(handler.received) == 1


async def test_publish_returns_only_once_the_consumers_have_handled_the_event(
    bus: InProcessBus,
) -> None:
    # The in-process publisher confirm: an event published before the consumers run is
    # neither lost nor confirmed; publish completes once they committed it.
    handler = Recorder()
    bus.subscribe("statistics.checks", ["check.completed"], handler)
    publishing = asyncio.create_task(bus.publish([event("check.completed")]))
    await asyncio.sleep(0.02)
    assert handler.received == []
    assert not publishing.done()
    await bus.start()
    await asyncio.wait_for(publishing, 5)
    assert len(handler.received) == 1


async def test_publish_fails_for_events_not_consumed_when_the_bus_closes(
    bus: InProcessBus,
) -> None:
    # So the outbox keeps the row unsent and publishes it again on the next start.
    bus.subscribe("statistics.checks", ["check.completed"], Recorder())
    publishing = asyncio.create_task(bus.publish([event("check.completed")]))
    await asyncio.sleep(0.02)
    await bus.close()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(publishing, 5)


async def test_hand_over_returns_once_queued_and_the_consumer_still_gets_every_event(
    bus: InProcessBus,
) -> None:
    # A probe's result is held like a confirmed RabbitMQ message: the probe does not wait
    # for the consumers' commits (a busy consumer would stop the checks).
    handler = Recorder()
    bus.subscribe("statistics.checks", ["check.completed"], handler)
    handed = [event("check.completed") for _ in range(3)]
    await asyncio.wait_for(bus.hand_over(handed), 1)  # no consumer runs yet
    assert handler.received == []
    assert bus.pending("statistics.checks") == 3
    await bus.start()
    await eventually(lambda: len(handler.received) == 3)
    assert [e.id for e in handler.received] == [e.id for e in handed]


async def test_hand_over_waits_for_room_once_a_consumer_is_backlogged() -> None:
    bus = InProcessBus(backlog_limit=2)
    release = asyncio.Event()
    committed: list[Envelope] = []

    async def slow(batch: Sequence[Envelope]) -> None:
        await release.wait()
        committed.extend(batch)

    bus.subscribe("statistics.checks", ["check.completed"], slow, max_batch=1)
    try:
        await bus.hand_over([event("check.completed"), event("check.completed")])
        waiting = asyncio.create_task(bus.hand_over([event("check.completed")]))
        await asyncio.sleep(0.02)
        assert not waiting.done()  # two queued: the third waits
        await bus.start()
        # The consumer took one off the queue: room, though nothing is committed yet.
        await asyncio.wait_for(waiting, 5)
        assert committed == []
        release.set()
        await eventually(lambda: len(committed) == 3)
        # A backlog of another consumer's does not hold these back.
        bus.subscribe("audit.monitors", ["monitor.*"], Recorder())
        await bus.hand_over([event("check.completed")])
    finally:
        await bus.close()


async def test_the_wait_of_each_batch_s_oldest_message_is_measured(bus: InProcessBus) -> None:
    name = f"waited.{uuid.uuid4().hex}"
    handler = Recorder()
    bus.subscribe(name, ["check.completed"], handler)
    await bus.hand_over([event("check.completed")])
    await asyncio.sleep(0.3)  # queued while no consumer runs
    await bus.start()
    await eventually(lambda: len(handler.received) == 1)

    def sample(suffix: str, le: str | None = None) -> float | None:
        labels = {"consumer": name} | ({} if le is None else {"le": le})
        return REGISTRY.get_sample_value(f"pingtower_inprocess_queue_wait_seconds{suffix}", labels)

    assert sample("_count") == 1
    assert sample("_bucket", "0.25") == 0  # it waited longer
    assert (sample("_sum") or 0.0) >= 0.3


async def test_a_hand_over_waiting_for_room_fails_when_the_bus_closes() -> None:
    bus = InProcessBus(backlog_limit=1)
    bus.subscribe("statistics.checks", ["check.completed"], Recorder())
    await bus.hand_over([event("check.completed")])
    waiting = asyncio.create_task(bus.hand_over([event("check.completed")]))
    await asyncio.sleep(0.02)
    await bus.close()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(waiting, 5)


async def test_handed_over_events_still_queued_at_close_are_counted_lost(bus: InProcessBus) -> None:
    bus.subscribe("statistics.checks", ["check.completed"], Recorder())
    lost = REGISTRY.get_sample_value("pingtower_inprocess_handed_over_lost_total") or 0.0
    await bus.hand_over([event("check.completed"), event("check.completed")])
    await bus.close()
    assert REGISTRY.get_sample_value("pingtower_inprocess_handed_over_lost_total") == lost + 2
    with pytest.raises(ConnectionError):
        await bus.hand_over([event("check.completed")])


async def test_a_handed_over_event_that_fails_is_redelivered_then_dead_lettered(
    bus: InProcessBus,
) -> None:
    poison, good = event("check.completed"), event("check.completed")
    tries = 0

    async def handler(batch: Sequence[Envelope]) -> None:
        nonlocal tries
        if any(e.id == poison.id for e in batch):
            tries += len(batch) == 1
            raise RuntimeError("cannot apply this one")

    bus.subscribe("statistics.checks", ["check.completed"], handler, max_batch=10)
    await bus.hand_over([poison, good])
    await bus.start()
    await eventually(lambda: bus.dead_letters == [poison])
    assert tries == bus.delivery_limit
    assert bus.pending("statistics.checks") == 0


async def test_an_event_nobody_subscribed_to_is_dropped(bus: InProcessBus) -> None:
    handler = Recorder()
    bus.subscribe("statistics.checks", ["check.completed"], handler)
    await bus.start()
    await bus.publish([event("slo.burn_rate_exceeded")])
    await asyncio.sleep(0.05)
    assert handler.received == []
    assert bus.pending("statistics.checks") == 0


async def test_handlers_of_one_consumer_compete_for_its_messages(bus: InProcessBus) -> None:
    # Two replicas of one consumer: each message goes to exactly one of them.
    first, second = Recorder(delay=0.03), Recorder(delay=0.03)
    bus.subscribe("pinger.evaluator", ["check.completed"], first, max_batch=1)
    bus.subscribe("pinger.evaluator", ["check.completed"], second, max_batch=1)
    await bus.start()

    published = [event("check.completed") for _ in range(6)]
    for envelope in published:
        await bus.publish([envelope])
        await asyncio.sleep(0.005)

    await eventually(lambda: len(first.received) + len(second.received) == 6)
    await asyncio.sleep(0.05)
    delivered = Counter(e.id for e in first.received + second.received)
    assert delivered == Counter(e.id for e in published)
    # Both replicas took a share.
    assert first.received
    assert second.received


async def test_waiting_messages_are_delivered_in_batches_of_at_most_max_batch(
    bus: InProcessBus,
) -> None:
    handler = Recorder()
    bus.subscribe("statistics.checks", ["check.completed"], handler, max_batch=3)
    published = [event("check.completed") for _ in range(7)]
    publishing = asyncio.create_task(bus.publish(published))
    await asyncio.sleep(0.01)
    await bus.start()
    await asyncio.wait_for(publishing, 5)

    await eventually(lambda: len(handler.received) == 7)
    assert [len(batch) for batch in handler.batches] == [3, 3, 1]
    assert [e.id for e in handler.received] == [e.id for e in published]


async def test_a_failing_message_is_redelivered_then_dead_lettered_while_the_rest_pass(
    bus: InProcessBus,
) -> None:
    poison = event("check.completed")
    good = [event("check.completed") for _ in range(4)]
    seen_poison = 0
    handled: list[uuid.UUID] = []

    async def handler(batch: Sequence[Envelope]) -> None:
        nonlocal seen_poison
        if any(e.id == poison.id for e in batch):
            if len(batch) == 1:
                seen_poison += 1
            raise RuntimeError("cannot apply this one")
        handled.extend(e.id for e in batch)

    bus.subscribe("statistics.checks", ["check.completed"], handler, max_batch=10)
    publishing = asyncio.create_task(bus.publish([good[0], good[1], poison, good[2], good[3]]))
    await asyncio.sleep(0.01)
    await bus.start()
    await asyncio.wait_for(publishing, 10)

    await eventually(lambda: bus.dead_letters == [poison])
    # The four good messages of the failed batch were each applied exactly once ...
    assert sorted(handled) == sorted(e.id for e in good)
    # ... and the poison one was tried delivery_limit times on its own before it was given up.
    assert seen_poison == bus.delivery_limit
    await asyncio.sleep(0.3)
    assert seen_poison == bus.delivery_limit
    assert bus.pending("statistics.checks") == 0


async def test_a_message_that_fails_once_is_delivered_on_its_retry(bus: InProcessBus) -> None:
    flaky = event("check.completed")
    attempts = 0
    applied: list[uuid.UUID] = []

    async def handler(batch: Sequence[Envelope]) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("database restarting")
        applied.extend(e.id for e in batch)

    bus.subscribe("statistics.checks", ["check.completed"], handler)
    await bus.start()
    await bus.publish([flaky])
    await eventually(lambda: applied == [flaky.id])
    assert bus.dead_letters == []


async def test_a_consumer_keeps_consuming_after_a_message_was_dead_lettered(
    bus: InProcessBus,
) -> None:
    poison, later = event("check.completed"), event("check.completed")
    applied: list[uuid.UUID] = []

    async def handler(batch: Sequence[Envelope]) -> None:
        if any(e.id == poison.id for e in batch):
            raise ValueError("bad payload")
        applied.extend(e.id for e in batch)

    bus.subscribe("statistics.checks", ["check.completed"], handler)
    await bus.start()
    await bus.publish([poison])
    await eventually(lambda: bus.dead_letters == [poison])
    await bus.publish([later])
    await eventually(lambda: applied == [later.id])


async def test_a_consumer_subscribed_after_start_begins_consuming(bus: InProcessBus) -> None:
    await bus.start()
    handler = Recorder()
    bus.subscribe("late.joiner", ["incident.*"], handler)
    await bus.publish([event("incident.resolved")])
    await eventually(lambda: len(handler.received) == 1)


async def test_jobs_go_only_to_the_workers_of_their_region(bus: InProcessBus) -> None:
    europe: list[uuid.UUID] = []
    america: list[uuid.UUID] = []

    async def run_in_europe(job: Envelope) -> None:
        europe.append(job.id)

    async def run_in_america(job: Envelope) -> None:
        america.append(job.id)

    bus.consume_jobs("eu", run_in_europe, concurrency=2)
    bus.consume_jobs("us", run_in_america, concurrency=2)
    await bus.start()
    eu_jobs = [event("check.job") for _ in range(3)]
    us_job = event("check.job")
    for job in eu_jobs:
        await bus.publish_job(job, "eu")
    await bus.publish_job(us_job, "us")

    await eventually(lambda: len(europe) == 3 and len(america) == 1)
    assert sorted(europe) == sorted(j.id for j in eu_jobs)
    assert america == [us_job.id]


async def test_a_region_runs_at_most_concurrency_jobs_at_a_time(bus: InProcessBus) -> None:
    running = 0
    most = 0
    done = 0

    async def check(_job: Envelope) -> None:
        nonlocal running, most, done
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.02)
        running -= 1
        done += 1

    bus.consume_jobs("default", check, concurrency=3)
    await bus.start()
    for _ in range(10):
        await bus.publish_job(event("check.job"), "default")
    await eventually(lambda: done == 10)
    assert most == 3


async def test_a_failing_job_does_not_stop_its_worker(bus: InProcessBus) -> None:
    ran: list[uuid.UUID] = []
    broken = event("check.job")

    async def check(job: Envelope) -> None:
        if job.id == broken.id:
            raise RuntimeError("probe crashed on this target")
        ran.append(job.id)

    bus.consume_jobs("default", check, concurrency=1)
    await bus.start()
    after = event("check.job")
    await bus.publish_job(broken, "default")
    await bus.publish_job(after, "default")
    await eventually(lambda: ran == [after.id])


async def test_close_stops_delivery(bus: InProcessBus) -> None:
    handler = Recorder()
    bus.subscribe("statistics.checks", ["check.completed"], handler)
    await bus.start()
    await bus.close()
    # Refused, not silently queued: the outbox keeps the row unsent for the next start.
    with pytest.raises(ConnectionError):
        await bus.publish([event("check.completed")])
    await asyncio.sleep(0.05)
    assert handler.received == []


async def test_the_in_process_bus_is_always_ready(bus: InProcessBus) -> None:
    await bus.check()


async def test_deliver_batch_gives_a_healthy_batch_to_the_handler_once() -> None:
    handler = Recorder()
    failures: list[Envelope] = []

    async def failed(envelope: Envelope, _exc: BaseException) -> None:
        failures.append(envelope)

    batch = [event() for _ in range(3)]
    await deliver_batch(batch, handler, failed)
    assert handler.batches == [batch]
    assert failures == []


async def test_deliver_batch_isolates_the_one_bad_message_of_a_failed_batch() -> None:
    bad = event()
    batch = [event(), bad, event()]
    calls: list[list[uuid.UUID]] = []
    failures: list[tuple[uuid.UUID, str]] = []

    async def handler(given: Sequence[Envelope]) -> None:
        calls.append([e.id for e in given])
        if bad in given:
            raise ValueError("bad one")

    async def failed(envelope: Envelope, exc: BaseException) -> None:
        failures.append((envelope.id, str(exc)))

    await deliver_batch(batch, handler, failed)
    assert calls == [[e.id for e in batch], *([e.id] for e in batch)]
    assert failures == [(bad.id, "bad one")]


async def test_deliver_batch_reports_a_failing_single_message_without_retrying_it() -> None:
    calls = 0
    failures: list[Envelope] = []
    only = event()

    async def handler(_given: Sequence[Envelope]) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("down")

    async def failed(envelope: Envelope, _exc: BaseException) -> None:
        failures.append(envelope)

    await deliver_batch([only], handler, failed)
    assert calls == 1
    assert failures == [only]


async def test_consumers_get_the_published_envelope_and_its_contract_unvalidated_again() -> None:
    bus = InProcessBus(linger_seconds=0)
    first, second = Recorder(), Recorder()
    bus.subscribe("first", ["monitor.#"], first)
    bus.subscribe("second", ["monitor.deleted"], second)
    deleted = MonitorDeleted(monitor_id=uuid.uuid4())
    envelope = Envelope.wrap(deleted, producer="test", tenant="t")
    await bus.start()
    try:
        await asyncio.wait_for(bus.publish([envelope]), 5)
    finally:
        await bus.close()
    assert first.received[0] is envelope
    assert second.received[0] is envelope
    assert first.received[0].parse() is deleted


async def test_one_publish_to_several_consumers_returns_once_each_handled_each_event(
    bus: InProcessBus,
) -> None:
    # One wait per publish call, not one per delivery: it must still cover every consumer's
    # every message, a redelivered one included.
    fast, other = Recorder(), Recorder()
    gate = asyncio.Event()
    failures = 0
    slow: list[Envelope] = []

    async def gated(batch: Sequence[Envelope]) -> None:
        nonlocal failures
        await gate.wait()
        if failures < 2:  # the first batch, then its first message alone: redelivered
            failures += 1
            raise ConnectionError("database restarting")
        slow.extend(batch)

    for name, handler in (("evaluator", fast), ("statistics", other), ("notificator", gated)):
        bus.subscribe(name, ["check.completed"], handler, max_batch=4)
    published = [event("check.completed") for _ in range(10)]
    await bus.start()
    publishing = asyncio.create_task(bus.publish(published))
    await eventually(lambda: len(fast.received) == 10 and len(other.received) == 10)
    assert not publishing.done()
    gate.set()
    await asyncio.wait_for(publishing, 10)
    assert sorted(e.id for e in slow) == sorted(e.id for e in published)
    assert failures == 2
    assert bus.dead_letters == []
    assert all(bus.pending(name) == 0 for name in ("evaluator", "statistics", "notificator"))


async def test_a_publish_returns_when_one_of_its_messages_was_dead_lettered(
    bus: InProcessBus,
) -> None:
    # A dead-lettered message is settled (the broker took it): the publish succeeds.
    poison, good = event("check.completed"), event("check.completed")

    async def handler(batch: Sequence[Envelope]) -> None:
        if any(e.id == poison.id for e in batch):
            raise ValueError("bad payload")

    bus.subscribe("statistics.checks", ["check.completed"], handler)
    bus.subscribe("evaluator", ["check.completed"], Recorder())
    await bus.start()
    await asyncio.wait_for(bus.publish([poison, good]), 10)
    assert bus.dead_letters == [poison]


async def test_jobs_reach_their_workers_in_the_order_they_were_published(
    bus: InProcessBus,
) -> None:
    ran: list[uuid.UUID] = []

    async def check(job: Envelope) -> None:
        ran.append(job.id)

    bus.consume_jobs("eu", check, concurrency=1)
    await bus.start()
    jobs = [event("check.job") for _ in range(50)]
    others = [event("check.job") for _ in range(5)]
    unpublished = await bus.publish_jobs(
        [(job, "eu") for job in jobs[:25]]
        + [(job, "us") for job in others]
        + [(job, "eu") for job in jobs[25:]]
    )
    assert unpublished == []
    await eventually(lambda: len(ran) == len(jobs))
    assert ran == [job.id for job in jobs]
    assert bus._job_queue("us").qsize() == len(others)  # nobody consumes that region


async def test_a_job_whose_woken_worker_is_cancelled_goes_to_another_worker(
    bus: InProcessBus,
) -> None:
    queue = bus._job_queue("default")
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await eventually(lambda: len(queue._waiting) == 2)
    job = event("check.job")
    queue.put_nowait(job)  # wakes the first waiting task...
    first.cancel()  # ...which is cancelled before it runs
    assert await asyncio.wait_for(second, timeout=3) is job
    assert first.cancelled()
    assert queue.empty()


async def test_a_job_queue_refuses_a_take_when_it_is_empty(bus: InProcessBus) -> None:
    queue = bus._job_queue("default")
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()
    job = event("check.job")
    await bus.publish_job(job, "default")
    assert (queue.qsize(), queue.get_nowait(), queue.empty()) == (1, job, True)


async def test_a_tick_of_jobs_wakes_one_waiting_task_per_job_and_passes_over_cancelled_ones(
    bus: InProcessBus,
) -> None:
    queue = bus._job_queue("default")
    takers = [asyncio.create_task(queue.get()) for _ in range(3)]
    await eventually(lambda: len(queue._waiting) == 3)
    queue._waiting[0].cancel()  # its task was cancelled and has not run yet
    jobs = [event("check.job") for _ in range(4)]
    queue.put_all(jobs)
    taken = await asyncio.wait_for(asyncio.gather(*takers[1:]), timeout=3)
    assert taken == jobs[:2], "each woken task takes the next job, in order"
    with pytest.raises(asyncio.CancelledError):
        await takers[0]
    assert [queue.get_nowait() for _ in range(queue.qsize())] == jobs[2:]
    assert not queue._waiting


async def test_publish_in_turn_queues_at_once_and_settles_once_consumed(
    bus: InProcessBus,
) -> None:
    release = asyncio.Event()
    seen: list[Envelope] = []

    async def held(batch: Sequence[Envelope]) -> None:
        await release.wait()
        seen.extend(batch)

    bus.subscribe("held", ["monitor.#"], held, max_batch=1)
    await bus.start()
    first, second = [event()], [event()]
    settled_first = await bus.publish_in_turn(first)
    settled_second = await bus.publish_in_turn(second)
    await asyncio.sleep(0.05)
    # Both are queued (the consumer holds the first), neither is settled before its commit.
    assert not settled_first.done()
    assert not settled_second.done()
    release.set()
    await asyncio.wait_for(asyncio.gather(settled_first, settled_second), 5)
    assert seen == first + second


async def test_publish_in_turn_settles_at_once_without_a_consumer(bus: InProcessBus) -> None:
    await bus.start()
    settled = await bus.publish_in_turn([event("nobody.listens")])
    assert settled.done()
    assert settled.exception() is None


async def test_publish_in_turn_fails_its_future_when_the_bus_closes(bus: InProcessBus) -> None:
    bus.subscribe("never-started", ["monitor.#"], Recorder())  # the bus is not started
    settled = await bus.publish_in_turn([event()])
    await bus.close()
    with pytest.raises(ConnectionError):
        await settled
