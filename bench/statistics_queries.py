"""Statistics query times on PostgreSQL with a year of generated data for 1,000 monitors,
through the real API handlers (httpx over ASGITransport, as the integration tests drive them).

    PINGTOWER_TEST_POSTGRES_URL=postgresql+asyncpg://postgres:postgres@127.0.0.1:5432 \
        .venv/bin/python -m bench.statistics_queries [--monitors 1000] [--scale 0.25] \
        [--runs 7] [--hour-days 365] [--minute-days 7] [--incidents 12] [--postgres URL]

A year of minute cells for 1,000 monitors is 525 million rows; the service itself never keeps
that: compaction folds minute cells into hour and day cells behind a watermark and retention
drops minute cells after 7 days. So the data is generated the way the system keeps it: day and
hour cells for the year (--hour-days; the service's default hour retention is 90 days, the
issue asks for a year), minute cells for the recent week (--minute-days), the watermark 6 minutes
before "now" (the most minute cells a reader ever meets after compaction), a status
timeline with incidents per monitor, and the monitors projection. Rows are written with COPY
(asyncpg) into a database migrated by the service's own Alembic tree, then ANALYZEd. Cells take
their counts, latency sums and histograms from pools built with the real Histogram (one check a
minute, latencies log-normal around 80 ms), so histograms have realistic bucket counts.
Finished hour and day cells carry the figures compaction writes when it finishes a cell
(percentiles and the series point, domain/cell_figures.py); the hour and the day in progress
do not. Yesterday's day tails are written by compaction's own `write_day_tails`.

--scale is the share of the monitors that get that whole history (about 19,200 cells each;
1.0 writes 19 million rows, 10 to 15 minutes on a loaded 2-core machine). The others get what
the overview reads (day cells for the year, hour cells for 2 days, minute cells from 2 hours
before the watermark), so the overview always covers --monitors. The single-monitor queries ask
about the first monitor, which has the whole history. Raw results are not generated: none of
these queries reads them. The overview is timed twice: with the p95 snapshot empty (as right
after a start) and after service.refresh_metrics() (what the background loop keeps warm).
Each query runs --runs times after one warm-up; p50 and max are reported. The
database is created for the run and dropped afterwards. Targets from issue 5: overview under
300 ms, single-monitor queries under 50 ms. Beside the wall times, the process CPU of each
query (the steadier figure on a shared machine) is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench._database import throwaway_database
from pingtower.common import db
from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.runtime import build_app
from pingtower.common.security import SingleWorkspaceAuthenticator
from pingtower.common.settings import Settings
from pingtower.roles import migrations_dir
from pingtower.statistics.domain.cell_figures import figures
from pingtower.statistics.domain.histogram import Histogram
from pingtower.statistics.domain.series import StoredCell
from pingtower.statistics.service import StatisticsService
from pingtower.statistics.store import compaction, queries
from pingtower.statistics.store.watermark import NAME as WATERMARK

TENANT = "bench"
NOW = datetime(2026, 11, 10, 12, 4, tzinfo=UTC)
# The watermark at its furthest behind: compaction runs every minute and folds up to the last
# minute that ended 5 minutes ago (compact_grace), so at 12:04 it is at 11:59, or 11:58 just
# before a run. The hour cell of 11:00 holds 11:00-11:58 (generated as a full hour's cell).
FOLDED = datetime(2026, 11, 10, 11, 58, tzinfo=UTC)
FOLDED_HOUR = datetime(2026, 11, 10, 11, tzinfo=UTC)
MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
TARGET_OVERVIEW_MS = 300.0
TARGET_SINGLE_MS = 50.0
POOL = 64
PHASES = ("dns", "connect", "tls", "first_byte")
ROLLUP_COLUMNS = (
    "monitor_id",
    "region",
    "resolution",
    "bucket_start",
    "tenant",
    "up",
    "degraded",
    "down",
    "latency_count",
    "latency_min",
    "latency_max",
    "latency_sum",
    "phase_sums",
    "phase_counts",
    "histogram",
    "figures_checks",
    "p50",
    "p90",
    "p95",
    "p99",
    "point_json",
)


def cell_pool(checks: int, rng: random.Random) -> list[tuple[str, str]]:
    """POOL cells of `checks` checks each, as the tail of a CSV line: up, degraded, down,
    latency_count, min, max, sum, phase_sums, phase_counts (JSON), histogram (bytes), then
    the figures compaction writes into a finished cell; once with them and once without
    (NULL), for a cell still being folded."""
    pool = []
    for _ in range(POOL):
        down = 1 if checks > 1 and rng.random() < 0.3 else 0
        latencies = [rng.lognormvariate(4.4, 0.35) for _ in range(checks - down)]
        histogram = Histogram()
        histogram.extend(latencies)
        n = len(latencies)
        total = sum(latencies)
        sums = {
            p: round(total * share, 3)
            for p, share in zip(PHASES, (0.02, 0.1, 0.2, 0.5), strict=True)
        }
        stored = StoredCell(
            n,
            0,
            down,
            n,
            min(latencies),
            max(latencies),
            total,
            sums,
            dict.fromkeys(PHASES, n),
            histogram.to_bytes(),
        )
        (found,) = figures([stored])
        line = io.StringIO()
        csv.writer(line, lineterminator="").writerow(
            (
                *stored[:7],
                json.dumps(stored.phase_sums),
                json.dumps(stored.phase_counts),
                "\\x" + stored.histogram.hex(),  # bytea in COPY's hex form
            )
        )
        cell = line.getvalue()
        line = io.StringIO()
        csv.writer(line, lineterminator="").writerow(found)
        pool.append((f"{cell},{line.getvalue()}", f"{cell},,,,,,"))
    return pool


def span(start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    count = int((end - start) / step)
    return [start + i * step for i in range(count)]


class Generated:
    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self.seconds = 0.0

    def add(self, table: str, count: int) -> None:
        self.rows[table] = self.rows.get(table, 0) + count


def timeline(
    monitor_id: uuid.UUID, start: datetime, rng: random.Random, incidents_per_year: int
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Status intervals (up, down, up, ...; the last one open) and one incident per down."""
    year = (NOW - start).total_seconds()
    starts = sorted(rng.uniform(0, year - 7200) for _ in range(incidents_per_year))
    intervals: list[tuple[Any, ...]] = []
    found: list[tuple[Any, ...]] = []
    at = start
    for offset in starts:
        down_at = start + timedelta(seconds=offset)
        if down_at <= at:
            continue
        back_at = down_at + timedelta(seconds=rng.uniform(120, 3600))
        intervals.append((TENANT, monitor_id, at, down_at, "up", ""))
        intervals.append((TENANT, monitor_id, down_at, back_at, "down", "timeout"))
        found.append((uuid.uuid4(), TENANT, monitor_id, down_at, back_at, "timeout", "eu"))
        at = back_at
    intervals.append((TENANT, monitor_id, at, None, "up", ""))
    return intervals, found


async def generate(dsn: str, args: argparse.Namespace, monitors: int, full: int) -> Generated:
    rng = random.Random(5)
    pools = {
        "minute": cell_pool(1, rng),
        "hour": cell_pool(60, rng),
        "day": cell_pool(1440, rng),
    }
    hour_start = FOLDED_HOUR - timedelta(days=args.hour_days)
    times = {
        # the last one is today's: it starts at midnight and holds [00:00, FOLDED)
        "day": span(FOLDED_HOUR.replace(hour=0) - timedelta(days=364), FOLDED + DAY, DAY),
        "hour": span(hour_start, FOLDED_HOUR + HOUR, HOUR),
        "minute": span(NOW - timedelta(days=args.minute_days), NOW, MINUTE),
    }
    # the other monitors: only what the overview reads (and the year of day cells)
    recent = {
        "day": times["day"],
        "hour": span(FOLDED_HOUR - 2 * DAY, FOLDED_HOUR + HOUR, HOUR),
        "minute": span(FOLDED - 2 * HOUR, NOW, MINUTE),
    }
    unfinished = {
        "day": FOLDED_HOUR.replace(hour=0).isoformat(),
        "hour": FOLDED_HOUR.isoformat(),
        "minute": "",
    }
    ids = [uuid.UUID(int=i + 1, version=4) for i in range(monitors)]
    out = Generated()
    began = time.perf_counter()
    connection = await asyncpg.connect(dsn)
    try:
        await connection.copy_records_to_table(
            "monitors",
            columns=(
                "monitor_id",
                "tenant",
                "name",
                "type",
                "target",
                "tags",
                "public",
                "paused",
                "interval_seconds",
                "last_check_at",
                "last_outcome",
                "last_latency_ms",
            ),
            records=[
                (
                    m,
                    TENANT,
                    f"monitor-{i:05d}",
                    "http",
                    f"https://service-{i}.example.com/health",
                    json.dumps(["bench", f"team-{i % 10}"]),
                    True,
                    False,
                    60,
                    NOW - timedelta(seconds=20),
                    "up",
                    80.0,
                )
                for i, m in enumerate(ids)
            ],
        )
        out.add("monitors", monitors)
        stamps = {r: [at.isoformat() for at in starts] for r, starts in times.items()}
        few = {r: [at.isoformat() for at in starts] for r, starts in recent.items()}
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=2)

        async def writer() -> None:
            # a second connection: PostgreSQL parses one monitor's cells while this process
            # formats the next one's
            other = await asyncpg.connect(dsn)
            try:
                while (chunk := await queue.get()) != b"":
                    await other.copy_to_table(
                        "rollups", source=io.BytesIO(chunk), columns=ROLLUP_COLUMNS, format="csv"
                    )
            finally:
                await other.close()

        writers = [asyncio.create_task(writer()) for _ in range(2)]
        for index, m in enumerate(ids):
            lines: list[str] = []
            for resolution, starts in (stamps if index < full else few).items():
                pool = pools[resolution]
                head = f"{m},eu,{resolution},"
                tail = f",{TENANT},"
                pick = rng.randrange
                # cells whose hour or day has not been folded whole have no figures yet
                lines.extend(
                    f"{head}{at}{tail}{pool[pick(POOL)][at >= unfinished[resolution]]}\n"
                    for at in starts
                )
                kind = "full" if index < full else "recent only"
                out.add(f"rollups {resolution} ({kind})", len(starts))
            await queue.put("".join(lines).encode())
            intervals, found = timeline(m, FOLDED - timedelta(days=365), rng, args.incidents)
            await connection.copy_records_to_table(
                "status_intervals",
                columns=("tenant", "monitor_id", "start_at", "end_at", "status", "reason"),
                records=intervals,
            )
            await connection.copy_records_to_table(
                "incidents",
                columns=(
                    "incident_id",
                    "tenant",
                    "monitor_id",
                    "started_at",
                    "resolved_at",
                    "cause",
                    "region",
                ),
                records=found,
            )
            out.add("status_intervals", len(intervals))
            out.add("incidents", len(found))
        for _ in writers:
            await queue.put(b"")
        await asyncio.gather(*writers)
        await connection.execute(
            "INSERT INTO watermarks (name, folded_until) VALUES ($1, $2) "
            "ON CONFLICT (name) DO UPDATE SET folded_until = excluded.folded_until",
            WATERMARK,
            FOLDED,
        )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    out.seconds = time.perf_counter() - began
    return out


@dataclass
class Timing:
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)  # this process's CPU time


async def timed(
    runs: int, call: Callable[[], Awaitable[httpx.Response | object]]
) -> tuple[Timing, object]:
    first = await call()  # warm-up (statement caches, connection pool)
    if isinstance(first, httpx.Response) and first.status_code != 200:
        raise RuntimeError(f"{first.request.url}: {first.status_code} {first.text[:300]}")
    found = Timing()
    for _ in range(runs):
        began, cpu = time.perf_counter(), time.process_time()
        await call()
        found.walls.append((time.perf_counter() - began) * 1000)
        found.cpus.append((time.process_time() - cpu) * 1000)
    return found, first


def row(name: str, timing: Timing, target: float | None, note: str = "") -> str:
    p50, worst = statistics.median(timing.walls), max(timing.walls)
    cpu = statistics.median(timing.cpus)
    ratio = f"{p50 / target:>5.2f}" if target else "    -"
    goal = f"< {target:.0f} ms" if target else "-"
    return (
        f"| {name:<44} | {p50:>8.1f} | {worst:>8.1f} | {cpu:>8.1f} | {goal:>9} | {ratio} | {note}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--monitors", type=int, default=1000)
    parser.add_argument(
        "--scale", type=float, default=0.25, help="share of monitors with the whole history"
    )
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--hour-days", type=int, default=365, help="days of hour cells")
    parser.add_argument("--minute-days", type=int, default=7, help="days of minute cells")
    parser.add_argument("--incidents", type=int, default=12, help="incidents per monitor-year")
    parser.add_argument("--postgres", default=os.environ.get("PINGTOWER_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    if not args.postgres:
        parser.error("--postgres or PINGTOWER_TEST_POSTGRES_URL is needed")
    monitors = args.monitors
    full = max(1, round(monitors * args.scale))
    one = uuid.UUID(int=1, version=4)
    lines = []

    async with throwaway_database(args.postgres, "bench_statsq") as url:
        await db.migrate(url, migrations_dir("statistics"))
        dsn = url.replace("postgresql+asyncpg://", "postgresql://")
        generated = await generate(dsn, args, monitors, full)
        with tempfile.TemporaryDirectory() as data:
            settings = Settings(statistics_database_url=url, data_dir=Path(data))
            bus = InProcessBus()
            service = StatisticsService(settings, bus, clock=lambda: NOW)
            async with service.sessions() as session, session.begin():
                # what compaction wrote when it finished yesterday (the overview reads them)
                await compaction.write_day_tails(session, FOLDED_HOUR.replace(hour=0) - DAY)
            app = build_app("statistics", [service], bus, SingleWorkspaceAuthenticator(TENANT))
            transport = httpx.ASGITransport(app)
            try:
                async with httpx.AsyncClient(transport=transport, base_url="http://s") as client:
                    base = f"/api/v1/stats/monitors/{one}"
                    year_start = (NOW - timedelta(days=365)).isoformat()
                    hours_start = (NOW - timedelta(hours=1999)).isoformat()

                    def get(path: str, **params: str) -> Callable[[], Awaitable[httpx.Response]]:
                        query = {("from" if k == "start" else k): v for k, v in params.items()}
                        return lambda: client.get(path, params=query)

                    async def year_hourly_store() -> object:
                        async with service.sessions() as session:
                            return await queries.step_cells(
                                session, one, NOW - timedelta(days=365), NOW, HOUR
                            )

                    overview, body = await timed(args.runs, get("/api/v1/stats/overview"))
                    assert isinstance(body, httpx.Response)
                    items = len(body.json()["items"])
                    lines.append(
                        row(
                            f"overview, {items} monitors (no p95 cache)",
                            overview,
                            TARGET_OVERVIEW_MS,
                        )
                    )
                    await service.refresh_metrics()  # what the background loop does every 30 s
                    cached, _ = await timed(args.runs, get("/api/v1/stats/overview"))
                    lines.append(
                        row(
                            f"overview, {items} monitors (p95 snapshot warm)",
                            cached,
                            TARGET_OVERVIEW_MS,
                        )
                    )
                    uptime, body = await timed(args.runs, get(base + "/uptime", window="90d"))
                    assert isinstance(body, httpx.Response)
                    checks = body.json()["checks"]
                    lines.append(
                        row("uptime 90d, one monitor", uptime, TARGET_SINGLE_MS, f"{checks} checks")
                    )
                    p95, _ = await timed(
                        args.runs,
                        get(f"/api/v1/stats/badges/{one}/response-time.svg", window="90d"),
                    )
                    lines.append(row("p95 90d, one monitor (badge)", p95, TARGET_SINGLE_MS))
                    bars, _ = await timed(args.runs, get(base + "/daily", days="90"))
                    lines.append(
                        row("daily uptime, 90 days (detail page bars)", bars, TARGET_SINGLE_MS)
                    )
                    daily, _ = await timed(
                        args.runs, get(base + "/timeseries", start=year_start, step="1d")
                    )
                    lines.append(row("timeseries 1 year, step 1d", daily, TARGET_SINGLE_MS))
                    hourly, _ = await timed(
                        args.runs, get(base + "/timeseries", start=hours_start, step="1h")
                    )
                    lines.append(row("timeseries 2,000 h, step 1h", hourly, TARGET_SINGLE_MS))
                    year, body = await timed(
                        args.runs, get(base + "/timeseries", start=year_start, step="1h")
                    )
                    assert isinstance(body, httpx.Response)
                    count = len(body.json()["points"])
                    lines.append(
                        row("timeseries 1 year, step 1h", year, TARGET_SINGLE_MS, f"{count} points")
                    )
                    store, _ = await timed(args.runs, year_hourly_store)
                    lines.append(
                        row("1 year hourly, store query only (step_cells)", store, TARGET_SINGLE_MS)
                    )
            finally:
                await service.engine.dispose()

    print(
        f"{monitors} monitors, {full} with the whole history; "
        f"generated in {generated.seconds:.1f} s (COPY + ANALYZE, PostgreSQL):"
    )
    for table, count in generated.rows.items():
        print(f"  {table:<28} {count:>12,}")
    print(f"  {'total':<28} {sum(generated.rows.values()):>12,}")
    print(f"{args.runs} runs each after a warm-up; now = {NOW.isoformat()}, watermark {FOLDED}")
    print(f"| {'query':<44} |  p50 ms |   max ms |  CPU p50 |    target | ratio |")
    print(f"|{'-' * 46}|----------|----------|----------|-----------|-------|")
    for line in lines:
        print(line)


if __name__ == "__main__":
    asyncio.run(main())
