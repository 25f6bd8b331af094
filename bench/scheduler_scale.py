"""The scheduler alone at scale: its CPU and memory with N monitors, measured in-process.

    .venv/bin/python -m bench.scheduler_scale [--monitors 50000] [--interval 30] [--fresh]

Fills a throwaway SQLite database (or PostgreSQL with --postgres, on the test server) with N
HTTP monitors, then drives one `Scheduler` on a simulated clock (so a whole interval takes only
as long as its work): the schedule's load, one interval of ticks (every 0.1 s of simulated
time, publishing to a bus that only counts), the change poll and the full reconciliation, each
with its CPU time (the process's, so the database driver's thread is included) and the Python
heap the schedule holds per monitor (tracemalloc). `--fresh` stamps every monitor as just
written, as a bulk import (`pingtower apply`) does: the poll's overlap window then covers them.
Nothing goes over the network but the database connection.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from bench._database import throwaway_database
from bench._monitor_rows import http_monitor_row
from bench._table import Row, print_rows
from pingtower.common.events import Envelope, utcnow
from pingtower.common.messaging.bus import Bus, UnpublishedJob
from pingtower.common.settings import Settings
from pingtower.pinger.scheduler.scheduler import Scheduler
from pingtower.pinger.store.database import PingerDatabase
from pingtower.pinger.store.states import initial_state_row
from pingtower.pinger.store.tables import monitor_states, monitors

TICK = 0.1  # simulated seconds between the scheduler's wake-ups


class CountingBus:
    """Takes every job and only counts it: the bench measures the scheduler, not a transport."""

    def __init__(self) -> None:
        self.jobs = 0

    async def publish_jobs(self, jobs: Sequence[tuple[Envelope, str]]) -> list[UnpublishedJob]:
        self.jobs += len(jobs)
        return []


class SimulatedClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def fill(db: PingerDatabase, count: int, interval: int, fresh: bool) -> None:
    now = utcnow()
    chunk = 5000
    for start in range(0, count, chunk):
        rows, states = [], []
        for index in range(start, min(count, start + chunk)):
            monitor_id = uuid.uuid4()
            # Written over the past day, or all at once (a bulk import).
            stamp = now if fresh else now - timedelta(seconds=86_400 * (count - index) / count)
            rows.append(
                http_monitor_row(
                    monitor_id,
                    index,
                    target=f"http://127.0.0.1:9/{index}",
                    interval=interval,
                    retry_interval=10,
                    stamp=stamp,
                    settings={"expected_status": ["200-299"], "follow_redirects": True},
                    tags=["bench"],
                )
            )
            state = initial_state_row(monitor_id, "bench", paused=False)
            states.append({**state, "since": stamp, "changed_at": stamp})
        async with db.sessions() as session, session.begin():
            await session.execute(monitors.insert(), rows)
            await session.execute(monitor_states.insert(), states)


async def cpu_of(call: Callable[[], Awaitable[Any]], repeat: int = 1) -> tuple[float, Any]:
    """Mean process CPU seconds of one call (every thread: the driver's included)."""
    gc.collect()
    before = time.process_time()
    result = None
    for _ in range(repeat):
        result = await call()
    return (time.process_time() - before) / repeat, result


async def measure(url: str, count: int, interval: int, fresh: bool) -> list[Row]:
    counting = CountingBus()
    db = PingerDatabase(Settings(pinger_database_url=url), cast(Bus, counting))
    await db.prepare()
    try:
        started = time.monotonic()
        await fill(db, count, interval, fresh)
        print(f"filled {count} monitors in {time.monotonic() - started:.1f} s")
        clock = SimulatedClock()
        scheduler = Scheduler(db, cast(Bus, counting), clock=clock)

        load_cpu, _ = await cpu_of(scheduler.load_all)
        # The heap in a second scheduler's load: tracemalloc slows the process several times,
        # so it must not run while CPU is measured.
        gc.collect()
        tracemalloc.start()
        heap_before = tracemalloc.get_traced_memory()[0]
        other = Scheduler(db, cast(Bus, counting), clock=clock)
        await other.load_all()
        gc.collect()
        heap = tracemalloc.get_traced_memory()[0] - heap_before
        tracemalloc.stop()
        del other

        # One interval to settle (the first run of every monitor), then one measured.
        # Tick times from one origin: summing 0.1 s steps drifts, and an interval's window
        # then gained or lost a run.
        ticks = round(interval / TICK)
        origin = clock.now
        for tick in range(1, ticks + 1):
            clock.now = origin + tick * TICK
            await scheduler.publish_due()
        counting.jobs = 0
        busiest = 0.0
        gc.collect()
        publish_cpu = time.process_time()
        for tick in range(ticks + 1, 2 * ticks + 1):
            clock.now = origin + tick * TICK
            tick_started = time.process_time()
            await scheduler.publish_due()
            busiest = max(busiest, time.process_time() - tick_started)
        publish_cpu = time.process_time() - publish_cpu
        jobs = counting.jobs

        await scheduler.poll_changes()  # the first poll after the load reads its overlap
        poll_cpu, polled = await cpu_of(scheduler.poll_changes, repeat=10)
        reconcile_cpu, found = await cpu_of(scheduler.reconcile, repeat=3)
        # A monitor added, then another a poll later (an import through the API): each poll
        # that finds one changes the whole interval's group.
        added_cpu = []
        for _ in range(2):
            await fill(db, 1, interval, fresh=True)
            clock.now += scheduler.poll_seconds
            added_cpu.append((await cpu_of(scheduler.poll_changes))[0])
        # Per simulated second of the steady state: ticks, a poll every poll_seconds, a
        # reconciliation every reconcile_seconds.
        per_second = (
            publish_cpu / interval
            + poll_cpu / scheduler.poll_seconds
            + reconcile_cpu / scheduler.reconcile_seconds
        )
        return [
            ("monitors x interval", f"{count} x {interval} s", ""),
            ("database", url.split(":", 1)[0] + (", all just written" if fresh else ""), ""),
            ("jobs in one interval", f"{jobs}", f"{count}"),
            ("load_all (a new leader's start)", f"{load_cpu * 1000:.0f} ms CPU", ""),
            ("schedule's Python heap", f"{heap / 1024 / count:.2f} KiB per monitor", ""),
            ("publish: CPU per job", f"{publish_cpu / max(jobs, 1) * 1e6:.1f} us", ""),
            ("publish: busiest tick", f"{busiest * 1000:.1f} ms", ""),
            ("poll_changes (every 0.5 s)", f"{poll_cpu * 1000:.1f} ms CPU, {polled} rows", ""),
            (
                "poll finding a new monitor, twice",
                " then ".join(f"{cpu * 1000:.0f} ms" for cpu in added_cpu) + " CPU",
                "",
            ),
            ("reconcile (every 30 s)", f"{reconcile_cpu * 1000:.0f} ms CPU, found {found}", "0"),
            ("scheduler's CPU, steady state", f"{per_second:.1%} of one core", ""),
        ]
    finally:
        await db.engine.dispose()


async def run(args: argparse.Namespace) -> list[Row]:
    if args.postgres:
        server = os.environ["PINGTOWER_TEST_POSTGRES_URL"]
        async with throwaway_database(server, "bench_scheduler") as url:
            return await measure(url, args.monitors, args.interval, args.fresh)
    with tempfile.TemporaryDirectory(prefix="pingtower-scheduler-") as workdir:
        url = f"sqlite+aiosqlite:///{Path(workdir) / 'pinger.sqlite3'}"
        return await measure(url, args.monitors, args.interval, args.fresh)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--monitors", type=int, default=50_000)
    parser.add_argument("--interval", type=int, default=30)
    parser.add_argument("--fresh", action="store_true", help="every monitor just written")
    parser.add_argument("--postgres", action="store_true", help="on PINGTOWER_TEST_POSTGRES_URL")
    args = parser.parse_args()
    rows = asyncio.run(run(args))
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print_rows(rows, 34, "expected")


if __name__ == "__main__":
    main()
