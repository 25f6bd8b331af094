"""The scheduler's job path alone: CPU per job from the heap to an in-process job consumer.

    .venv/bin/python -m bench.scheduler_publish [--monitors 15000] [--interval 20] [--intervals 3]

Drives one `Scheduler` on a simulated clock, ticking every 25 ms of simulated time as the
leader does (`TICK_SECONDS`), publishing to an `InProcessBus` whose job consumers (as many
tasks as a probe starts) only take the job's contract and read its deadline, as the probe does
before it checks. No database: the schedule is filled from rows made here, as a new leader's
`load_all` would. The first interval builds every monitor's job template and is not measured;
then the CPU of each following interval's ticks (publishing and the hand-off until every
consumer has its job) is divided by the jobs published. For a before/after comparison run it
from a copy of the other sources with `PYTHONPATH` pointing there.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import uvloop

from pingtower.cli import GC_THRESHOLDS
from pingtower.common.events import CheckJob, Envelope
from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.pinger.scheduler.scheduler import TICK_SECONDS, Scheduler

PROBE_TASKS = 256 * 4  # the default probe's consumer tasks (probe_concurrency x JOBS_IN_HAND)


class SimulatedClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def monitor_row(index: int, interval: int) -> SimpleNamespace:
    return SimpleNamespace(
        id=uuid.uuid4(),
        tenant="bench",
        type="http",
        target=f"http://127.0.0.1:8080/{index}",
        settings={"method": "GET", "expected_status": [200]},
        timeout_seconds=5.0,
        regions=["default"],
        interval_seconds=interval,
        retry_interval_seconds=interval,
        updated_at=datetime.now(UTC),
        cron=None,
        timezone="UTC",
        paused=False,
        deleted_at=None,
    )


async def measure(monitors: int, interval: int, intervals: int) -> None:
    taken = 0

    async def consume(envelope: Envelope) -> None:
        nonlocal taken
        envelope.parse_as(CheckJob).deadline  # noqa: B018 - what the probe reads first
        taken += 1

    bus = InProcessBus()
    bus.consume_jobs("default", consume, concurrency=PROBE_TASKS)
    await bus.start()
    clock = SimulatedClock()
    scheduler = Scheduler(None, bus, clock=clock)  # type: ignore[arg-type]  # no database here
    for index in range(monitors):
        scheduler._upsert(monitor_row(index, interval), False)
    scheduler._respread()

    async def one_interval() -> tuple[int, float, float]:
        published = 0
        already = taken
        cpu_publish = 0.0
        start = time.process_time()
        # Tick times from one origin: summed 25 ms steps drift, and an interval gains a run.
        origin = clock.now
        for tick in range(1, round(interval / TICK_SECONDS) + 1):
            clock.now = origin + tick * TICK_SECONDS
            before = time.process_time()
            published += await scheduler.publish_due()
            cpu_publish += time.process_time() - before
            while taken - already < published:  # the consumers take their jobs
                await asyncio.sleep(0)
        return published, cpu_publish, time.process_time() - start

    await one_interval()  # builds the templates
    # As the embedded process does once started (`pingtower up`): full collections would
    # walk the schedule and dominate the figures.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    print(f"{monitors} monitors x {interval} s, ticks of {TICK_SECONDS * 1000:.0f} ms")
    for run in range(intervals):
        jobs, cpu_publish, cpu_all = await one_interval()
        print(
            f"interval {run + 1}: {jobs} jobs, publish_due {cpu_publish / jobs * 1e6:.2f} us/job, "
            f"with the hand-off {cpu_all / jobs * 1e6:.2f} us/job"
        )
    await bus.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--monitors", type=int, default=15_000)
    parser.add_argument("--interval", type=int, default=20)
    parser.add_argument("--intervals", type=int, default=3)
    args = parser.parse_args()
    uvloop.run(measure(args.monitors, args.interval, args.intervals))


if __name__ == "__main__":
    main()
