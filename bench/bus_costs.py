"""CPU per message of the RabbitMQ bus itself: this process's and the broker's.

    set -a; . /tmp/testenv.vars; set +a
    .venv/bin/python -m bench.bus_costs [--messages 10000] [--batch 500]

Three phases on a throwaway namespace of PINGTOWER_TEST_RABBITMQ_URL, each timed apart:
publishing `check.completed` events in calls of `--batch` (what a probe does with its results:
its calls hold the results finished in one event-loop iteration, often a few dozen), consuming
check jobs with a handler that returns at once (a probe's job path without the check) and
consuming events in batches (an evaluator's path without its handler). For each: events or
jobs per second, this process's CPU per event or job and, when the broker runs on this machine
(a `beam.smp` process), the broker's CPU per event or job (shared: other clients' traffic
counts too). Events published in one call travel as few AMQP messages (packing.py): the
figures are per event, not per AMQP message. Everything it declares is deleted at the end;
load goes to the local broker only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import aio_pika

from bench._runtime import process_cpu_seconds
from bench.scale_out import broker_pid
from pingtower.common.events import CheckCompleted, CheckJob, Envelope, Outcome, utcnow
from pingtower.common.messaging.rabbitmq import RabbitMQBus

BATCH = 500
MAX_MESSAGES = 100_000


@dataclass
class Phase:
    name: str
    messages: int
    seconds: float
    cpu_seconds: float
    broker_cpu_seconds: float | None

    def row(self) -> str:
        own = 1000 * self.cpu_seconds / self.messages
        broker = (
            f"{1000 * self.broker_cpu_seconds / self.messages:.3f}"
            if self.broker_cpu_seconds is not None
            else "-"
        )
        rate = self.messages / self.seconds
        return f"{self.name:<28} {self.messages:>8} {rate:>10.0f} {own:>14.3f} {broker:>16}"


async def measured(
    name: str, messages: int, work: Callable[[], Awaitable[None]], broker: int | None
) -> Phase:
    cpu = process_cpu_seconds(os.getpid())
    broker_cpu = process_cpu_seconds(broker) if broker is not None else 0.0
    started = time.monotonic()
    await work()
    seconds = time.monotonic() - started
    return Phase(
        name,
        messages,
        seconds,
        process_cpu_seconds(os.getpid()) - cpu,
        process_cpu_seconds(broker) - broker_cpu if broker is not None else None,
    )


def result(index: int) -> Envelope:
    now = utcnow()
    completed = CheckCompleted(
        check_id=uuid.uuid4(),
        monitor_id=uuid.uuid4(),
        region="default",
        scheduled_at=now,
        started_at=now,
        finished_at=now,
        outcome=Outcome.UP,
        latency_ms=1.5 + index % 7,
        status_code=200,
        size_bytes=612,
        phases_ms={"connect": 0.2, "first_byte": 0.9},
    )
    return Envelope.wrap(completed, producer="pinger.probe", tenant="bench")


def job(index: int) -> Envelope:
    now = utcnow()
    check = CheckJob(
        monitor_id=uuid.uuid4(),
        check_type="http",
        target="http://127.0.0.1:8080/",
        timeout_seconds=5.0,
        scheduled_at=now + timedelta(microseconds=index),
        deadline=now + timedelta(hours=1),
    )
    return Envelope.wrap(check, producer="pinger.scheduler", tenant="bench")


async def until(condition: Callable[[], bool], seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the broker did not deliver every message in time")
        await asyncio.sleep(0.01)


async def run(url: str, messages: int, batch: int) -> list[Phase]:
    namespace = f"busbench{uuid.uuid4().hex[:8]}"
    broker = broker_pid()
    phases: list[Phase] = []
    jobs_done = 0
    events_done = 0

    async def run_job(_job: Envelope) -> None:
        nonlocal jobs_done
        jobs_done += 1

    async def handle(batch: Sequence[Envelope]) -> None:
        nonlocal events_done
        events_done += len(batch)

    publisher = RabbitMQBus(url, namespace=namespace)
    consumer = RabbitMQBus(url, namespace=namespace)
    try:
        await publisher.start()
        # The consumer's queue, declared (by a bus that consumes nothing yet) before anything
        # is published, so that every event is routed to it.
        declarer = RabbitMQBus(url, namespace=namespace)
        declarer.subscribe("bench.results", ["check.completed"], handle)
        await declarer.start()
        await declarer.close()
        events = [result(i) for i in range(messages)]

        async def publish() -> None:
            for start in range(0, messages, batch):
                await publisher.publish(events[start : start + batch])

        name = f"publish events ({batch} a call)"
        phases.append(await measured(name, messages, publish, broker))
        consumer.subscribe("bench.results", ["check.completed"], handle)

        async def consume_events() -> None:
            await consumer.start()
            await until(lambda: events_done >= messages)

        phases.append(await measured("consume events (batches)", messages, consume_events, broker))
        unpublished = await publisher.publish_jobs([(job(i), "default") for i in range(messages)])
        if unpublished:
            raise RuntimeError(f"{len(unpublished)} jobs not taken: {unpublished[0].error!r}")
        # The prefetch of a probe with the default concurrency (128 checks, 4 jobs each).
        consumer.consume_jobs("default", run_job, concurrency=512)

        async def consume_jobs() -> None:
            await until(lambda: jobs_done >= messages)

        phases.append(await measured("consume jobs (acknowledged)", messages, consume_jobs, broker))
    finally:
        await consumer.close()
        await publisher.close()
        await delete_names(url, namespace)
    return phases


async def delete_names(url: str, namespace: str) -> None:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        for queue in ("jobs.default", "bench.results", "dead-letters"):
            await channel.queue_delete(f"{namespace}.{queue}")
        for exchange in ("events", "jobs", "dlx"):
            await channel.exchange_delete(f"{namespace}.{exchange}")
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=BATCH, help="events per publish call")
    args = parser.parse_args()
    url = os.environ.get("PINGTOWER_TEST_RABBITMQ_URL")
    if not url:
        sys.exit("needs PINGTOWER_TEST_RABBITMQ_URL")
    messages = min(max(args.messages, BATCH), MAX_MESSAGES)
    phases = asyncio.run(run(url, messages, min(max(args.batch, 1), BATCH)))
    header = (
        f"{'phase':<28} {'count':>8} {'per second':>10} {'ms CPU / each':>14} "
        f"{'broker ms / each':>16}"
    )
    print(header)
    print("-" * len(header))
    for phase in phases:
        print(phase.row())
    print(f"load average: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
