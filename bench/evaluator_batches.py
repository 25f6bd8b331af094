"""The evaluator's consumer alone: CPU per check result through the real `pinger.evaluator`
handler (the lookup of results stored already + `Evaluator.apply`, one transaction per batch,
as the bus runs it), on SQLite and optionally on PostgreSQL.

    .venv/bin/python -m bench.evaluator_batches [--monitors 3000] [--batch 60] \
        [--batches 150] [--stored 0] [--postgres URL] [--no-sqlite]

N HTTP monitors with their state rows are inserted, each gets a first result (UNKNOWN -> UP,
not measured), then `--batches` batches of `--batch` results (one per monitor, each a round
later than its last, all UP: the steady state of `bench.schedule_keeping`) are applied. The
envelopes are made beforehand by `Envelope.wrap`, as the in-process bus hands them over.
"CPU" is the process's CPU time (every thread: the loop's and aiosqlite's, user + system)
per result; "loop thread" the event loop's thread alone; "reads" and "writes" the process's
read and write system calls per result (/proc: on SQLite, pages its cache did not hold, and
pages written to the WAL and copied back by checkpoints).

`--stored N` first writes N results per monitor straight into check_results (SQLite only), so
that the tables and indexes are as large as after N rounds: with 3,000 monitors and none
stored, every page of the measured batches stays in SQLite's cache, which the embedded process
at 50,000 monitors does not have (bench/README.md, performance round 16).

On PostgreSQL the server's own CPU is not counted. The garbage collector is set as `pingtower
up` sets it once started (performance round 8; earlier rounds' figures were taken without).
Compare code versions by running a copy of the old sources with `PYTHONPATH` (bench/README.md,
performance round 5).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import sqlite3
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from bench._database import throwaway_database
from bench._monitor_rows import http_monitor_row
from pingtower.cli import GC_THRESHOLDS
from pingtower.common.events import CheckCompleted, Envelope, Outcome, utcnow
from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.settings import Settings
from pingtower.pinger.evaluator.evaluator import Evaluator
from pingtower.pinger.store.database import PingerDatabase
from pingtower.pinger.store.states import initial_state_row
from pingtower.pinger.store.tables import monitor_states, monitors

START = utcnow().replace(microsecond=0)
INTERVAL = 20  # seconds between a monitor's results


def scheduled(round_: int, spread: float) -> datetime:
    """A monitor's time in a round: the scheduler spreads the monitors over the interval
    (`spread`: its place, 0 to 1), so results are stored in the order they finished, and
    the key index (finished_at, check_id) grows at its end (performance round 17)."""
    return START + timedelta(seconds=INTERVAL * (round_ + spread))


def result(monitor_id: uuid.UUID, round_: int, spread: float) -> Envelope:
    at = scheduled(round_, spread)
    completed = CheckCompleted(
        check_id=uuid.uuid4(),
        monitor_id=monitor_id,
        region="default",
        scheduled_at=at,
        started_at=at,
        finished_at=at + timedelta(milliseconds=3),
        outcome=Outcome.UP,
        latency_ms=3.0,
        status_code=200,
        size_bytes=612,
        phases_ms={"connect": 0.2, "ttfb": 1.1, "total": 3.0},
    )
    return Envelope.wrap(completed, producer="pinger.probe", tenant="bench")


def io_calls() -> tuple[int, int]:
    """The process's read and write system calls so far (Linux)."""
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["syscr"]), int(fields["syscw"])


def stored_bytes(path: str) -> dict[str, int]:
    """The bytes of pages each table and index of the database holds (SQLite's dbstat)."""
    with sqlite3.connect(path) as connection:
        return dict(connection.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"))


def store_rounds(path: str, ids: list[uuid.UUID], rounds: int) -> None:
    """`rounds` results per monitor in check_results, in the order the evaluator writes them
    (a round at a time, the monitors spread over it as `result` spreads them); not chained
    (`previous_id`), which nothing measured here reads."""
    phases = '{"connect": 0.2, "ttfb": 1.1, "total": 3.0}'
    with sqlite3.connect(path) as connection:
        for round_ in range(-rounds, 0):
            rows = []
            for n, monitor_id in enumerate(ids):
                at = scheduled(round_, n / len(ids)).strftime("%Y-%m-%d %H:%M:%S.%f")
                rows.append((uuid.uuid4().hex, monitor_id.hex, at, at, at, phases))
            connection.executemany(
                "INSERT INTO check_results (check_id, monitor_id, tenant, region, "
                "scheduled_at, started_at, finished_at, outcome, latency_ms, status_code, "
                "size_bytes, phases_ms) VALUES (?, ?, 'bench', 'default', ?, ?, ?, 'up', 3.0, "
                "200, 612, ?)",
                rows,
            )
            connection.commit()


async def measure(
    url: str,
    monitor_count: int,
    batch: int,
    batches: int,
    *,
    stored: int = 0,
) -> str:
    settings = Settings(pinger_database_url=url)
    db = PingerDatabase(settings, InProcessBus())
    await db.prepare()
    sqlite_path = url.split(":///", 1)[1] if url.startswith("sqlite") else None
    try:
        evaluator = Evaluator(db, InProcessBus(), settings)
        handle = evaluator.handler()
        now = utcnow()
        ids = [uuid.uuid4() for _ in range(monitor_count)]
        definitions = [
            http_monitor_row(
                monitor_id,
                n,
                target="http://127.0.0.1/",
                interval=20,
                retry_interval=20,
                stamp=now,
            )
            for n, monitor_id in enumerate(ids)
        ]
        async with db.sessions() as session, session.begin():
            await session.execute(monitors.insert(), definitions)
            await session.execute(
                monitor_states.insert(),
                [initial_state_row(m, "bench", paused=False) for m in ids],
            )
        if sqlite_path is not None and stored:
            await asyncio.to_thread(store_rounds, sqlite_path, ids, stored)
        for start in range(0, monitor_count, batch):
            await handle(
                [
                    result(m, 0, (start + k) / monitor_count)
                    for k, m in enumerate(ids[start : start + batch])
                ]
            )
        per_round = monitor_count // batch
        work = []
        for n in range(batches):
            first = (n % per_round) * batch
            work.append(
                [
                    result(ids[first + k], 1 + n // per_round, (first + k) / monitor_count)
                    for k in range(batch)
                ]
            )
        # As `pingtower up` runs once started (cli.py): what exists now (the prepared
        # envelopes included) frozen, and the collector's thresholds raised. Without it the
        # collections walking the prepared batches were part of the measured CPU (py-spy put
        # them on whatever line allocated), which the process does not have.
        thresholds = gc.get_threshold()
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        sizes = await asyncio.to_thread(stored_bytes, sqlite_path) if sqlite_path else {}
        usage = resource.getrusage(resource.RUSAGE_SELF)
        calls = io_calls()
        cpu, loop_cpu = time.process_time(), time.thread_time()
        for envelopes in work:
            await handle(envelopes)
        loop_cpu = time.thread_time() - loop_cpu
        reads, writes = (after - before for after, before in zip(io_calls(), calls, strict=True))
        cpu = time.process_time() - cpu
        system = resource.getrusage(resource.RUSAGE_SELF).ru_stime - usage.ru_stime
        results = batch * batches
        per = 1e6 / results  # microseconds per result
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        line = (
            f"{url.split(':')[0]:<20} {results:>7,} results, per result: CPU {cpu * per:6.1f} us,"
            f" loop thread {loop_cpu * per:6.1f} us, system {system * per:5.1f} us,"
            f" reads {reads / results:4.2f}, writes {writes / results:4.2f}"
        )
        if sqlite_path:
            grown = {
                name: (size - sizes.get(name, 0)) / results
                for name, size in (await asyncio.to_thread(stored_bytes, sqlite_path)).items()
            }
            line += "\n  stored per result: " + ", ".join(
                f"{name} {size:.0f} B" for name, size in sorted(grown.items()) if size > 0
            )
        return line
    finally:
        await db.engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--monitors", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=60, help="results per batch")
    parser.add_argument("--batches", type=int, default=150)
    parser.add_argument(
        "--stored", type=int, default=0, help="results per monitor stored first (SQLite)"
    )
    parser.add_argument("--postgres", default=os.environ.get("PINGTOWER_TEST_POSTGRES_URL"))
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    if args.monitors < args.batch:
        parser.error("--monitors must be at least --batch")
    print(f"load average {os.getloadavg()[0]:.2f} (the machine may be shared)")
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite+aiosqlite:///{Path(folder) / 'pinger.sqlite3'}"
            print(
                await measure(
                    url,
                    args.monitors,
                    args.batch,
                    args.batches,
                    stored=args.stored,
                )
            )
    if args.postgres:
        async with throwaway_database(args.postgres, "pt_bench_evaluator") as url:
            print(await measure(url, args.monitors, args.batch, args.batches))


if __name__ == "__main__":
    asyncio.run(main())
