"""Statistics ingest rate: check.completed results per second through the real ingest handler
(inbox claim + ingest effect, one transaction per batch, as the consumer runs it), and CPU
seconds per 1,000 results, on PostgreSQL and on SQLite.

    PINGTOWER_TEST_POSTGRES_URL=postgresql+asyncpg://postgres:postgres@127.0.0.1:5432 \
        .venv/bin/python -m bench.statistics_ingest [--results 50000] [--monitors 1000] \
        [--batch 500] [--interval 60] [--postgres URL] [--no-sqlite]

The results are generated beforehand (one check per monitor every `--interval` seconds, in
time order, as a Pinger fleet sends them) and fed in batches of the consumer's size
(StatisticsService's ingest_batch; `pingtower up`'s consumer sees ~40 to 120 at a time). With
an interval under a minute most results are added to a minute cell already stored, as in the
embedded mode. On PostgreSQL (the distributed mode) each message arrives as bytes, decoded
and validated inside the timed part as a RabbitMQ consumer does; on SQLite (the embedded mode)
as the in-process bus hands it over, already a contract. The PostgreSQL database is created
for the run and dropped afterwards; the SQLite file lives in a temporary folder. "CPU s/1k" is
this process's CPU time (user + system) per 1,000 results, so it excludes the database server.
Target from issue 5: 5,000 results/s.

    .venv/bin/python -m bench.statistics_ingest --steps [--prefill 240000] [--results 60000] \
        [--monitors 10000] [--interval 20] [--batch 60]

`--steps`: the embedded mode's ingest taken apart (performance round 8). A SQLite database
migrated by the code on the path is filled with `--prefill` results (untimed: a store some
minutes old, whose indexes no longer fit SQLite's cache), then the next `--results` are
stored step by step as `sqlite_ingest` stores a batch, straight on one sqlite3 connection
with its functions registered, each step timed in CPU; us per result. Run it from two copies
of the sources (`PYTHONPATH`) to compare their schemas and code.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import resource
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

from bench._database import throwaway_database
from pingtower.common import db
from pingtower.common.events import CheckCompleted, Envelope, Outcome
from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.settings import Settings
from pingtower.statistics.service import MIGRATIONS, StatisticsService
from pingtower.statistics.store import ingest, sqlite_ingest

TARGET = 5000.0
START = datetime(2026, 11, 10, tzinfo=UTC)


@dataclass(frozen=True)
class Figures:
    storage: str
    results: int
    seconds: float
    cpu_seconds: float
    compaction_seconds: float

    @property
    def rate(self) -> float:
        return self.results / self.seconds

    def row(self) -> str:
        per_k = self.cpu_seconds / self.results * 1000
        return (
            f"| {self.storage:<10} | {self.results:>7} | {self.rate:>10.0f} | {per_k:>8.3f} "
            f"| {self.rate / TARGET:>5.2f} | {self.compaction_seconds:>12.2f} |"
        )


def envelopes(count: int, monitors: int, interval: float = 60.0) -> list[Envelope]:
    """`count` results in time order, each monitor checked every `interval` seconds.

    The monitors' ids are random (drawn from a fixed seed), as a fleet's are, so the results of
    a round come in no order of their ids: with ids counting up, a round wrote the cells'
    monitor-first key in order, and the cost of a page per cell went unseen (performance
    round 17)."""
    draw = random.Random(17)
    ids = [uuid.UUID(int=draw.getrandbits(128), version=4) for _ in range(monitors)]
    found = []
    for i in range(count):
        round_, m = divmod(i, monitors)
        finished = START + timedelta(seconds=(round_ + m / monitors) * interval)
        outcome = Outcome.DOWN if i % 97 == 0 else Outcome.UP
        event = CheckCompleted(
            check_id=uuid.uuid4(),
            monitor_id=ids[m],
            region="eu",
            scheduled_at=finished - timedelta(milliseconds=200),
            started_at=finished - timedelta(milliseconds=150),
            finished_at=finished,
            outcome=outcome,
            latency_ms=None if outcome is Outcome.DOWN else 20.0 + (i * 7919) % 400,
            status_code=200,
            phases_ms={"dns": 1.0, "connect": 3.0, "tls": 8.0, "first_byte": 12.0},
        )
        tenant = f"w{m % 10}"
        found.append(Envelope.wrap(event, producer="pinger", tenant=tenant, occurred_at=finished))
    return found


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(
    storage: str, url: str, batches: Sequence[Sequence[Envelope]], *, as_bytes: bool
) -> Figures:
    """`as_bytes`: the consumer gets each message as a RabbitMQ consumer does, as bytes to
    decode and validate (timed); otherwise as the in-process bus hands it over, the envelope
    with the contract it was wrapped from."""
    wire = [[envelope.to_bytes() for envelope in batch] for batch in batches] if as_bytes else []
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(statistics_database_url=url, data_dir=Path(data))
        clock_end = START + timedelta(days=2)
        service = StatisticsService(settings, InProcessBus(), clock=lambda: clock_end)
        await service.prepare()
        try:
            began, began_cpu = time.perf_counter(), cpu()
            if as_bytes:
                for encoded in wire:
                    await service.handler([Envelope.from_bytes(body) for body in encoded])
            else:
                for batch in batches:
                    await service.handler(batch)
            seconds, cpu_seconds = time.perf_counter() - began, cpu() - began_cpu
            compact_began = time.perf_counter()
            await service.compact()
            compaction = time.perf_counter() - compact_began
        finally:
            await service.engine.dispose()
    total = sum(len(b) for b in batches)
    return Figures(storage, total, seconds, cpu_seconds, compaction)


STEPS = ("rows", "owners", "insert", "cells", "upsert", "last checks", "commit")


def step_costs(every: Sequence[Envelope], prefill: int, batch: int) -> dict[str, float]:
    """CPU us per result of each step of `sqlite_ingest._store_if_known` and the COMMIT, for
    the results of `every` after the first `prefill` (stored first, untimed)."""
    facts = [(envelope, envelope.parse()) for envelope in every]
    spent = dict.fromkeys(STEPS, 0.0)
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/statistics.db"
        db.run_migrations(f"sqlite+aiosqlite:///{path}", MIGRATIONS)
        connection = sqlite3.connect(path, isolation_level=None)
        try:
            # as common/db.py sets every connection of the embedded mode
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            for name, (arguments, function) in sqlite_ingest._FUNCTIONS.items():
                connection.create_function(name, arguments, function, deterministic=True)
            owners = {(e.monitor_id.hex, envelope.tenant) for envelope, e in facts}
            connection.executemany(
                "INSERT INTO monitors (monitor_id, tenant, name, type, target, tags, public, "
                "paused) VALUES (?, ?, '', 'http', '', '[]', 0, 0)",
                sorted(owners),
            )
            gc.collect()
            gc.freeze()  # the setup's objects: no collection pass lands on one step or another
            for start in range(0, len(facts), batch):
                timed = start >= prefill
                clock = time.process_time
                marks = [clock()]
                checks = ingest._unique_results(facts[start : start + batch])
                rows = sqlite_ingest._result_rows(checks)
                marks.append(clock())
                connection.execute("BEGIN IMMEDIATE")
                cursor = connection.cursor()
                _, folded = sqlite_ingest._read_owners(connection, list({r[2] for r in rows}))
                marks.append(clock())
                fresh = sqlite_ingest._insert_results(cursor, checks, rows)
                marks.append(clock())
                fresh_rows = [rows[i] for i in fresh]
                cells = sqlite_ingest._fresh_cell_rows(
                    [checks[i] for i in fresh], fresh_rows, folded
                )
                marks.append(clock())
                cursor.executemany(sqlite_ingest._ADD_TO_CELL, cells)
                marks.append(clock())
                last = sqlite_ingest._last_checks(fresh_rows)
                cursor.executemany(sqlite_ingest._MOVE_LAST_CHECK, last)
                cursor.close()
                marks.append(clock())
                connection.execute("COMMIT")
                marks.append(clock())
                if timed:
                    for step, (a, b) in zip(STEPS, pairwise(marks), strict=True):
                        spent[step] += b - a
            gc.unfreeze()
        finally:
            connection.close()
    timed_count = len(facts) - prefill
    return {step: seconds / timed_count * 1e6 for step, seconds in spent.items()}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=50_000)
    parser.add_argument("--monitors", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=500, help="the consumer's max_batch")
    parser.add_argument(
        "--interval",
        type=float,
        default=60.0,
        help="seconds between two checks of a monitor (under 60: several results per minute "
        "cell, merged into the stored cell as the embedded mode's small batches do)",
    )
    parser.add_argument("--postgres", default=os.environ.get("PINGTOWER_TEST_POSTGRES_URL"))
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument(
        "--steps", action="store_true", help="SQLite's ingest step by step, CPU us per result"
    )
    parser.add_argument("--prefill", type=int, default=240_000, help="with --steps")
    args = parser.parse_args()

    if args.steps:
        every = envelopes(args.prefill + args.results, args.monitors, args.interval)
        costs = await asyncio.to_thread(step_costs, every, args.prefill, args.batch)
        print(
            f"{args.results} results after {args.prefill} over {args.monitors} monitors every "
            f"{args.interval:g} s, batches of {args.batch}; CPU us per result:"
        )
        print(" | ".join(f"{step} {cost:.1f}" for step, cost in costs.items()))
        print(f"total {sum(costs.values()):.1f}")
        return

    every = envelopes(args.results, args.monitors, args.interval)
    batches = [every[i : i + args.batch] for i in range(0, len(every), args.batch)]
    figures = []
    if args.postgres:
        async with throwaway_database(args.postgres, "bench_statistics") as url:
            figures.append(await run("postgresql", url, batches, as_bytes=True))
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite+aiosqlite:///{folder}/statistics.db"
            figures.append(await run("sqlite", url, batches, as_bytes=False))
    print(
        f"{args.results} results over {args.monitors} monitors every {args.interval:g} s, "
        f"batches of {args.batch}"
    )
    print("| storage    | results |  results/s | CPU s/1k | ×5000 | compaction s |")
    print("|------------|---------|------------|----------|-------|--------------|")
    for figure in figures:
        print(figure.row())


if __name__ == "__main__":
    asyncio.run(main())
