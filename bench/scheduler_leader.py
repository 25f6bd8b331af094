"""The scheduler leader's whole cost per job: what the embedded process pays for it.

    .venv/bin/python -m bench.scheduler_leader [--monitors 15000] [--interval 20]
        [--intervals 3] [--churn 10] [--evict-mib 8]

`bench.scheduler_publish` measures the job path alone; the leader does more for each job: it
polls the tables every `poll_seconds` (and the heartbeat watcher's query), reconciles with the
whole table every `reconcile_seconds`, and respreads a group whose members changed. Here a
`Scheduler` leads over a throwaway SQLite database of N HTTP monitors on a simulated clock,
waking every 25 ms of simulated time as the leader does (`TICK_SECONDS`) and running what the
leader runs at each wake-up, publishing to an `InProcessBus` whose job tasks (as many as a
probe starts) take the job's contract. Every `--churn` simulated seconds one monitor is added
and another edited through the table (a respread of the group, a template made again), as
the API would, stamped in simulated time (as is the poll's reading time); writing them is not
measured, the leader's reaction is. Between two wake-ups
`--evict-mib` of memory is written (not measured), as the process's other parts do, so the
schedule is not in the CPU's caches when the next tick comes.

The first interval builds the job templates and is not measured; then the process CPU (the
database driver's thread included) of each following interval's wake-ups is divided by the
jobs published, in total and per part: `publish_due`, the job tasks' side of the hand-off
(their wake-up and take, which the process's profile counts to the probe, not to
`Scheduler._run`), the change poll, the heartbeat watcher, the reconciliation. For a
before/after comparison run it from a copy of the other sources with `PYTHONPATH` pointing
there.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from bench import scheduler_scale
from bench.scheduler_scale import fill
from pingtower.cli import GC_THRESHOLDS
from pingtower.common.events import CheckJob, Envelope
from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.settings import Settings
from pingtower.pinger.scheduler import scheduler as scheduler_module
from pingtower.pinger.scheduler.scheduler import TICK_SECONDS, Scheduler
from pingtower.pinger.store.database import PingerDatabase
from pingtower.pinger.store.tables import monitors

PROBE_TASKS = 256 * 4  # the default probe's consumer tasks (probe_concurrency x JOBS_IN_HAND)
HAND_OFF = "job tasks' take"


class SimulatedClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Parts:
    """Process CPU per part of the leader's work, summed over the measured wake-ups."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.busiest = 0.0

    def timed(
        self,
        name: str,
        call: Callable[..., Awaitable[Any]],
        after: tuple[str, Callable[[], Awaitable[None]]] | None = None,
    ) -> Callable[..., Awaitable[Any]]:
        """`call` timed as `name`; then `after` (its name, its call) timed on its own."""

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            before = time.process_time()
            result = await call(*args, **kwargs)
            self.cpu[name] += time.process_time() - before
            self.calls[name] += 1
            if after is not None:
                before = time.process_time()
                await after[1]()
                self.cpu[after[0]] += time.process_time() - before
                self.calls[after[0]] += 1
            return result

        return wrapper


class HeadLoop:
    """The leader's wake-up of a scheduler without `lead_once` (a copy of an earlier HEAD)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        now = scheduler.clock()
        self.next_poll = now + scheduler.poll_seconds
        self.next_reconcile = now + scheduler.reconcile_seconds

    async def __call__(self) -> None:
        scheduler = self.scheduler
        await scheduler.publish_due()
        now = scheduler.clock()
        if now >= self.next_poll:
            await scheduler.poll_changes()
            await scheduler.heartbeats.report_late()
            self.next_poll = now + scheduler.poll_seconds
        if now >= self.next_reconcile:
            await scheduler.reconcile()
            self.next_reconcile = now + scheduler.reconcile_seconds


async def churn(db: PingerDatabase, interval: int, now: datetime) -> None:
    """A monitor added and another edited, as the API writes them, stamped `now`."""
    await fill(db, 1, interval, fresh=True)
    async with db.sessions() as session, session.begin():
        edited = await session.scalar(select(monitors.c.id).order_by(monitors.c.id).limit(1))
        await session.execute(
            update(monitors)
            .where(monitors.c.id == edited)
            .values(target=f"http://127.0.0.1:9/{uuid.uuid4().hex}", updated_at=now)
        )


async def measure(url: str, args: argparse.Namespace) -> None:
    taken = 0
    published = 0

    async def consume(envelope: Envelope) -> None:
        nonlocal taken
        envelope.parse_as(CheckJob).deadline  # noqa: B018 - what the probe reads first
        taken += 1

    async def handed_over() -> None:
        while taken < published:  # the job tasks take their jobs
            await asyncio.sleep(0)

    bus = InProcessBus()
    bus.consume_jobs("default", consume, concurrency=PROBE_TASKS)
    await bus.start()
    db = PingerDatabase(Settings(pinger_database_url=url), bus)
    await db.prepare()
    await fill(db, args.monitors, args.interval, fresh=False)
    clock = SimulatedClock()

    def simulated_utcnow() -> datetime:
        return datetime.fromtimestamp(clock.now, UTC)

    # The poll's overlap window and the monitors written meanwhile in simulated time too: in
    # wall-clock time, its 5 s covered a hundred simulated seconds of polls here.
    scheduler_module.utcnow = simulated_utcnow  # type: ignore[attr-defined]
    scheduler_scale.utcnow = simulated_utcnow  # type: ignore[attr-defined]
    scheduler = Scheduler(db, bus, clock=clock)
    await scheduler.load_all()
    parts = Parts()
    publish_due = scheduler.publish_due

    async def publish_counted() -> int:
        nonlocal published
        count = await publish_due()
        published = taken + count  # one region: a job per due monitor
        return count

    # The job tasks' side (their wake-up and take) runs in their own tasks, not the leader's.
    hand_off = (HAND_OFF, handed_over)
    scheduler.publish_due = parts.timed("publish_due", publish_counted, hand_off)  # type: ignore[method-assign,assignment]
    scheduler.poll_changes = parts.timed("poll_changes", scheduler.poll_changes)  # type: ignore[method-assign,assignment]
    watcher = scheduler.heartbeats
    watcher.report_late = parts.timed("heartbeat watcher", watcher.report_late)  # type: ignore[method-assign,assignment]
    step: Callable[[], Awaitable[None]]
    if hasattr(scheduler, "lead_once"):
        scheduler._reconcile_page = parts.timed(  # type: ignore[method-assign,assignment]
            "reconcile", scheduler._reconcile_page
        )
        scheduler._next_poll = clock.now + scheduler.poll_seconds
        scheduler._next_reconcile = clock.now + scheduler.reconcile_seconds
        step = scheduler.lead_once
    else:
        scheduler.reconcile = parts.timed("reconcile", scheduler.reconcile)  # type: ignore[method-assign,assignment]
        step = HeadLoop(scheduler)
    evicted = bytearray(args.evict_mib << 20)
    strides = [bytes([value]) * len(range(0, len(evicted), 64)) for value in (1, 2)]
    origin = clock.now
    ticks = round(args.interval / TICK_SECONDS)
    next_churn = args.churn

    async def one_interval(first: int) -> tuple[int, float]:
        nonlocal next_churn
        jobs = taken
        cpu = 0.0
        for tick in range(first, first + ticks):
            # Tick times from one origin: summed 25 ms steps drift, and an interval gains a run.
            clock.now = origin + tick * TICK_SECONDS
            if args.churn and tick * TICK_SECONDS >= next_churn:
                await churn(db, args.interval, simulated_utcnow())
                next_churn += args.churn
            before = time.process_time()
            await step()
            spent = time.process_time() - before
            cpu += spent
            parts.busiest = max(parts.busiest, spent)
            if evicted:
                evicted[::64] = strides[tick % 2]
        return taken - jobs, cpu

    await one_interval(1)  # builds the templates
    # As the embedded process does once started (`pingtower up`).
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    parts.cpu.clear()
    parts.calls.clear()
    parts.busiest = 0.0
    print(
        f"{args.monitors} monitors x {args.interval} s on SQLite, ticks of "
        f"{TICK_SECONDS * 1000:.0f} ms, churn every {args.churn} s, {args.evict_mib} MiB "
        f"written between ticks; {'lead_once' if hasattr(scheduler, 'lead_once') else 'HEAD loop'}"
    )
    all_jobs, all_cpu = 0, 0.0
    for run in range(args.intervals):
        jobs, cpu = await one_interval(1 + (run + 1) * ticks)
        all_jobs += jobs
        all_cpu += cpu
        print(f"interval {run + 1}: {jobs} jobs, {cpu / jobs * 1e6:.2f} us/job")
    # Per part over every measured interval: a reconciliation comes every 30 s, not in each.
    shares = ", ".join(
        f"{name} {spent / all_jobs * 1e6:.2f} ({parts.calls[name]}x)"
        for name, spent in parts.cpu.items()
    )
    own = sum(spent for name, spent in parts.cpu.items() if name != HAND_OFF)
    print(
        f"all: {all_cpu / all_jobs * 1e6:.2f} us/job, the leader's own (no {HAND_OFF}) "
        f"{own / all_jobs * 1e6:.2f}; of it, us/job: {shares}; "
        f"busiest wake-up {parts.busiest * 1000:.1f} ms"
    )
    await bus.close()
    await db.engine.dispose()


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="pingtower-leader-") as workdir:
        await measure(f"sqlite+aiosqlite:///{Path(workdir) / 'pinger.sqlite3'}", args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--monitors", type=int, default=15_000)
    parser.add_argument("--interval", type=int, default=20)
    parser.add_argument("--intervals", type=int, default=3)
    parser.add_argument("--churn", type=float, default=10.0, help="simulated s; 0: none")
    parser.add_argument("--evict-mib", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
