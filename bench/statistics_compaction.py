"""Statistics compaction alone on SQLite (the embedded mode): one minute of N monitors folded
into their hour and day cells, as `StatisticsService.compact` does each minute.

    .venv/bin/python -m bench.statistics_compaction [--monitors 50000] [--repeat 3] \
        [--label after] [--busy-ms 0] [--minutes 1] [--hour-end | --day-end]

A SQLite database migrated by the code on the path holds, per monitor, what steady state
holds a minute after the last fold: one minute cell (two results: a check every 30 s) after
the watermark, its hour cell (the hour's first minutes folded) and its day cell, and the
minute's results. One `compact()` then folds that minute (untimed: the service's creation,
its migrations, the rows). Measured: wall time and this process's CPU time (user + system,
the lock prober's own CPU taken out) of `compact()`, and the longest time SQLite's write lock
was held, as a prober on a connection of its own sees it: every ~5 ms it tries
`BEGIN IMMEDIATE` without a busy timeout (and commits at once when it gets it); the longest
run of refused attempts is a holder's time, to within ~5-10 ms (its period and its turn at
the GIL).
`--busy-ms N`: the event loop kept busy meanwhile as `pingtower up`'s is by its checks (~95 %
at 50,000 monitors), by a task that spins N ms of CPU and yields, again and again; its CPU is
taken out of the figure too. Whatever runs on SQLite's thread then waits for the GIL each time
it needs it (for a Python function, or to bind the next row of an `executemany`).
`--hour-end`: the minute folded is its hour's last, so the fold also writes the figures of
the hour's cells (`compaction.finish`). `--day-end`: the minute folded is its day's last,
its 23 earlier hours each with a cell per monitor, so the fold also writes the day's figures
and its tails (24 rows per monitor). `--minutes K`: K minutes after the watermark (a minute cell
each per monitor, two results each), folded by the one `compact()`, as a fold every K minutes
(`compact_every`) finds them; the time per cell is per minute cell folded. Run it from two
copies of the sources (`PYTHONPATH`) to compare them; each repeat is a fresh database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import resource
import sqlite3
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.settings import Settings
from pingtower.statistics.domain.histogram import Histogram
from pingtower.statistics.service import StatisticsService

DAY = datetime(2026, 11, 10, tzinfo=UTC)
HOUR = DAY + timedelta(hours=10)
MINUTE = HOUR + timedelta(minutes=5)  # the (last) minute folded; the hour cells hold 10 checks
# --hour-end: the hour's last minute, so that the fold finishes the hour (its figures)
LAST_MINUTE = HOUR + timedelta(minutes=59)
# --day-end: the day's last minute, its 23 earlier hours with a cell each (the day's tails)
DAY_LAST_MINUTE = DAY + timedelta(hours=23, minutes=59)
GRACE = timedelta(minutes=5)  # compact_grace: a fold goes up to a minute that ended 5 minutes ago
PHASES = ("dns", "connect", "tls", "first_byte")


def stored(at: datetime) -> str:
    return at.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def cell(monitor: str, resolution: str, at: datetime, latencies: list[float]) -> tuple[object, ...]:
    histogram = Histogram()
    histogram.extend(latencies)
    checks = len(latencies)
    return (
        monitor,
        "eu",
        resolution,
        stored(at),
        f"w{int(monitor, 16) % 10}",
        checks,
        0,
        0,
        checks,
        min(latencies),
        max(latencies),
        sum(latencies),
        json.dumps({phase: 2.5 * checks + i for i, phase in enumerate(PHASES)}),
        json.dumps(dict.fromkeys(PHASES, checks)),
        histogram.to_bytes(),
    )


def fill(path: str, monitors: int, minute: datetime, minutes: int) -> None:
    """The steady state `minutes` minutes after the last fold (the module's docstring)."""
    rows = []
    results = []
    hour = minute.replace(minute=0)
    first = minute - timedelta(minutes=minutes - 1)
    for m in range(monitors):
        monitor = uuid.UUID(int=m + 1, version=4).hex
        base = 20.0 + m % 400

        def latencies(n: int, seed: int, base: float = base) -> list[float]:
            return [base * (1 + ((seed + i) * 7919 % 100 - 50) / 1000) for i in range(n)]

        for k in range(minutes):
            at = first + timedelta(minutes=k)
            rows.append(cell(monitor, "minute", at, latencies(2, 600 + 2 * k)))
        rows.append(cell(monitor, "hour", hour, latencies(10, 590)))
        if hour != HOUR:  # a day's end: its earlier hours' cells too
            earlier = cell(monitor, "hour", DAY, latencies(120, 0))
            rows.extend((*earlier[:3], stored(at), *earlier[4:]) for at in hours_before(hour))
        rows.append(cell(monitor, "day", DAY, latencies(1210, 0)))
        for k in range(2 * minutes):
            at = stored(first + timedelta(seconds=30 * k + m * 30 / monitors))
            results.append(("w0", uuid.uuid4().hex, monitor, "eu", at, at, at, "up", 20.0, "{}"))
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(
            "INSERT INTO rollups (monitor_id, region, resolution, bucket_start, tenant, up, "
            "degraded, down, latency_count, latency_min, latency_max, latency_sum, phase_sums, "
            "phase_counts, histogram) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        connection.executemany(
            "INSERT INTO results (tenant, check_id, monitor_id, region, scheduled_at, "
            "started_at, finished_at, outcome, latency_ms, phases) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            results,
        )
        connection.execute(
            "INSERT OR REPLACE INTO watermarks (name, folded_until) VALUES ('rollups', ?)",
            (stored(first),),
        )
        connection.execute("COMMIT")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


class LockProber:
    """On a thread of its own, how long SQLite's write lock stays taken (module docstring)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.longest = 0.0
        self.refused = 0
        self.cpu = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LockProber:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        began = time.thread_time()
        connection = sqlite3.connect(self.path, isolation_level=None, timeout=0)
        try:
            blocked_since: float | None = None
            while not self._stop.is_set():
                try:
                    connection.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError:
                    self.refused += 1
                    if blocked_since is None:
                        blocked_since = time.perf_counter()
                else:
                    connection.execute("COMMIT")
                    if blocked_since is not None:
                        self.longest = max(self.longest, time.perf_counter() - blocked_since)
                        blocked_since = None
                # no more often: a prober that takes the lock while the GIL is scarce holds it
                # until it gets the GIL back, and keeps the writer it measures waiting
                time.sleep(0.005)
            if blocked_since is not None:
                self.longest = max(self.longest, time.perf_counter() - blocked_since)
        finally:
            connection.close()
            self.cpu = time.thread_time() - began


@dataclass(frozen=True)
class Figures:
    monitors: int
    minutes: int
    wall: float
    cpu: float
    lock: float
    steps: int

    def row(self, label: str) -> str:
        per = 1e6 / (self.monitors * self.minutes)
        return (
            f"| {label:<22} | {self.monitors:>8} | {self.minutes:>7} | {self.steps:>5} "
            f"| {self.wall:>6.2f} "
            f"| {self.cpu:>5.2f} | {self.lock:>9.3f} | {self.wall * per:>10.1f} "
            f"| {self.cpu * per:>9.1f} |"
        )


COLUMNS = (
    "monitors",
    "minutes",
    "folds",
    "wall s",
    "CPU s",
    "lock max s",
    "wall us/cell",
    "CPU us/cell",
)
HEADER = (
    f"| {'code':<22} | "
    + " | ".join(COLUMNS)
    + " |\n|"
    + "-" * 24
    + "|"
    + "|".join("-" * (len(name) + 1) + ":" for name in COLUMNS)
    + "|"
)


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Spinner:
    """Keeps the event loop busy (`--busy-ms`): `spin` ms of CPU, a yield, again."""

    def __init__(self, spin: float) -> None:
        self.spin = spin
        self.cpu = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Spinner:
        if self.spin > 0:
            self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            began, began_cpu = time.perf_counter(), time.thread_time()
            while time.perf_counter() - began < self.spin / 1000:
                pass
            self.cpu += time.thread_time() - began_cpu
            await asyncio.sleep(0)


async def once(monitors: int, busy_ms: float, minute: datetime, minutes: int) -> Figures:
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/statistics.sqlite3"
        settings = Settings(
            statistics_database_url=f"sqlite+aiosqlite:///{path}", data_dir=Path(folder)
        )
        now = minute + timedelta(minutes=1) + GRACE
        service = StatisticsService(settings, InProcessBus(), clock=lambda: now)
        try:
            await service.prepare()
            await asyncio.to_thread(fill, path, monitors, minute, minutes)
            gc.collect()
            with LockProber(path) as prober:
                async with Spinner(busy_ms) as spinner:
                    began, began_cpu = time.perf_counter(), cpu()
                    steps = await service.compact()
                    wall, spent = time.perf_counter() - began, cpu() - began_cpu
            check(path, monitors, minute, minutes)
        finally:
            await service.stop()
    return Figures(monitors, minutes, wall, spent - prober.cpu - spinner.cpu, prober.longest, steps)


def hours_before(hour: datetime) -> list[datetime]:
    return [DAY + timedelta(hours=n) for n in range(hour.hour)] if hour != HOUR else []


def check(path: str, monitors: int, minute: datetime, minutes: int) -> None:
    """The fold happened: every hour cell holds its minutes' two checks each (and at a day's end,
    every monitor has a tail per hour of the day)."""
    hour = minute.replace(minute=0)
    connection = sqlite3.connect(path)
    try:
        (checks,) = connection.execute(
            "SELECT sum(up) FROM rollups WHERE resolution = 'hour' AND bucket_start = ?",
            (stored(hour),),
        ).fetchone()
        (folded,) = connection.execute("SELECT folded_until FROM watermarks").fetchone()
        (tails,) = connection.execute("SELECT count(*) FROM day_tails").fetchone()
    finally:
        connection.close()
    if checks != (10 + 2 * minutes) * monitors or not folded.startswith(
        stored(minute + timedelta(minutes=1))
    ):
        raise RuntimeError(f"the fold did not happen: {checks} checks, watermark {folded}")
    if hour != HOUR and tails != 24 * monitors:
        raise RuntimeError(f"the day's tails were not written: {tails} rows")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--monitors", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--label", default="this")
    parser.add_argument("--busy-ms", type=float, default=0.0)
    parser.add_argument("--minutes", type=int, default=1, help="minutes folded at once (1-5)")
    parser.add_argument("--hour-end", action="store_true")
    parser.add_argument("--day-end", action="store_true")
    args = parser.parse_args()
    print(HEADER)
    label = " ".join(
        [args.label]
        + ["busy"] * bool(args.busy_ms)
        + ["hour end"] * args.hour_end
        + ["day end"] * args.day_end
    )
    if not 1 <= args.minutes <= 5:
        parser.error("--minutes: 1 to 5 (the hour cell holds the hour's first 5 minutes)")
    minute = DAY_LAST_MINUTE if args.day_end else LAST_MINUTE if args.hour_end else MINUTE
    for _ in range(args.repeat):
        figures = asyncio.run(once(args.monitors, args.busy_ms, minute, args.minutes))
        print(figures.row(label), flush=True)


if __name__ == "__main__":
    main()
