"""Schedule keeping, end to end: N HTTP monitors in the embedded mode (`pingtower up`, one
process: scheduler, probe, evaluator, statistics, notificator on SQLite) against a local nginx.

    .venv/bin/python -m bench.schedule_keeping [--monitors 2000] [--seconds 60] [--interval 20]

After creating the monitors through the API and letting one interval pass (every monitor then
has its slot), it measures over a window of whole intervals: checks done against checks due,
lateness (a result's started_at minus its scheduled_at), the process's CPU time per check (user +
system, from /proc, so it covers every part of the process), and memory per monitor (the growth
of the resident set since before the monitors were created, divided by N). Results are read from
the Pinger's SQLite file after the process has stopped. Load goes to 127.0.0.1 only, and the run
is bounded by --seconds plus the set-up.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench._runtime import (
    EmbeddedProcess,
    create_monitors,
    process_cpu_seconds,
    process_rss_kib,
    up_env,
)
from bench._table import Row, print_rows
from bench.local_nginx import LocalNginx

TARGET_P99_S = 1.0
TARGET_CPU_MS = 0.35
TARGET_KIB_PER_MONITOR = 20.0


def monitor_bodies(url: str, count: int, interval: int) -> list[dict[str, object]]:
    return [
        {
            "name": f"bench-{index}",
            "target": url,
            "interval_seconds": interval,
            "timeout_seconds": min(5, interval),
        }
        for index in range(count)
    ]


@dataclass
class ConsumerCounts:
    """One in-process consumer's counters so far, from the process's /metrics: batches,
    messages, and the cumulative histogram of each batch's oldest message's wait (le -> count)."""

    batches: float = 0.0
    messages: float = 0.0
    waits: dict[float, float] = field(default_factory=dict)


def consumer_counts(base: str) -> dict[str, ConsumerCounts]:
    import urllib.request

    # a minute: at 10,000 monitors the exposition alone takes seconds on a busy process
    with urllib.request.urlopen(f"{base}/metrics", timeout=60) as response:
        text = response.read().decode()
    found: dict[str, ConsumerCounts] = {}
    for line in text.splitlines():
        if not line.startswith("pingtower_inprocess_"):
            continue
        name, _, rest = line.partition("{")
        if 'consumer="' not in rest:
            continue
        counts = found.setdefault(rest.split('consumer="', 1)[1].split('"', 1)[0], ConsumerCounts())
        value = float(line.rsplit(" ", 1)[1])
        if name == "pingtower_inprocess_batches_total":
            counts.batches = value
        elif name == "pingtower_inprocess_batched_messages_total":
            counts.messages = value
        elif name == "pingtower_inprocess_queue_wait_seconds_bucket":
            counts.waits[float(rest.split('le="', 1)[1].split('"', 1)[0])] = value
    return found


def wait_bounds(start: dict[float, float], end: dict[float, float]) -> tuple[float, float] | None:
    """Upper bounds (histogram buckets) of the window's p99 and longest batch wait."""
    counts = {le: end[le] - start.get(le, 0.0) for le in sorted(end)}
    total = counts.get(float("inf"), 0.0)
    if not total:
        return None
    p99 = next(le for le, count in counts.items() if count >= 0.99 * total)
    return p99, next(le for le, count in counts.items() if count >= total)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def read_results(database: Path, start: datetime, end: datetime) -> list[tuple[float, str]]:
    """(lateness in seconds, outcome) of the checks scheduled within [start, end)."""
    naive = "%Y-%m-%d %H:%M:%S.%f"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT scheduled_at, started_at, outcome FROM check_results "
            "WHERE scheduled_at >= ? AND scheduled_at < ?",
            (start.strftime(naive), end.strftime(naive)),
        ).fetchall()
    out = []
    for scheduled, started, outcome in rows:
        lateness = datetime.fromisoformat(started) - datetime.fromisoformat(scheduled)
        out.append((lateness.total_seconds(), outcome))
    return out


def import_relayed(database: Path, events: int, timeout: float) -> float | None:
    """Seconds until the pinger's outbox has `events` rows and none unsent (every consumer
    committed them: the in-process bus settles a publish then), or None after `timeout`. Read
    from the database, not /metrics: the exposition costs the busy process seconds."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as db:
            written, unsent = db.execute(
                "SELECT count(*), count(*) FILTER (WHERE sent_at IS NULL) FROM outbox"
            ).fetchone()
        if written >= events and unsent == 0:
            return time.monotonic() - began
        time.sleep(5)
    return None


def start_profiler(path: str | None, pid: int, seconds: int) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the process during the measured window only (collapsed stacks; read
    them with `python -m bench.profile_summary PATH`). Sampling costs the process nothing."""
    if path is None:
        return None
    py_spy = Path(sys.executable).parent / "py-spy"
    command = [str(py_spy), "record", "--pid", str(pid), "--duration", str(seconds)]
    # --gil: only the thread holding the GIL, so the samples follow CPU time, not waits.
    command += ["--format", "raw", "--rate", "200", "--nonblocking", "--gil", "--output", path]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def take_heap_snapshot(pid: int, path: Path, timeout: float = 120) -> None:
    """Ask the process under `bench.tracemalloc_cli` for a heap snapshot and wait for it."""
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    size = -1
    while time.monotonic() < deadline:
        # Written by one dump call; a size that stopped growing means the dump is complete.
        current = path.stat().st_size if path.exists() else -1
        if current > 0 and current == size:
            return
        size = current
        time.sleep(0.5)
    raise RuntimeError(f"no heap snapshot at {path}")


def our_frame(traceback: tracemalloc.Traceback) -> str:
    """The innermost PingTower frame of an allocation (else its innermost frame): which of our
    structures holds memory a library allocated."""
    for frame in reversed(traceback):  # a traceback lists the oldest frame first
        if "/pingtower/" in frame.filename:
            return f"{frame.filename.rsplit('/pingtower/', 1)[1]}:{frame.lineno}"
    frame = traceback[-1]
    return f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"


def heap_growth(before: Path | None, after: Path, monitors: int, top: int = 25) -> list[str]:
    """The Python heap's growth between two snapshots (or what the one snapshot holds), per
    monitor, by our innermost frame."""
    new = tracemalloc.Snapshot.load(str(after))
    grown: dict[str, int] = {}
    if before is None:
        stats = [(stat.traceback, stat.size) for stat in new.statistics("traceback")]
    else:
        old = tracemalloc.Snapshot.load(str(before))
        stats = [(stat.traceback, stat.size_diff) for stat in new.compare_to(old, "traceback")]
    for traceback, size in stats:
        key = our_frame(traceback)
        grown[key] = grown.get(key, 0) + size
    total = sum(grown.values())
    lines = [f"Python heap growth: {total / 1024 / monitors:.1f} KiB per monitor (tracemalloc)"]
    for key, size in sorted(grown.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"{size / 1024 / monitors:8.2f} KiB  {key}")
    return lines


def loop_lag(path: Path, start: float, end: float, top: int = 12) -> tuple[list[Row], list[str]]:
    """Rows of the event loop's lag, stalls and GC pauses within [start, end) (epoch seconds)
    from `bench.loop_lag_cli`'s log, and the code seen holding the loop in stalls, commonest
    first."""
    lags: list[float] = []
    pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
    held: dict[str, int] = {}
    for line in path.read_text().splitlines():
        kind, at, rest = line.split(" ", 2)
        if not start <= float(at) < end:
            continue
        if kind == "lag":
            lags.append(float(rest))
        elif kind == "gc":
            generation, pause = rest.split()
            pauses[int(generation)].append(float(pause))
        elif kind == "stall":
            held[rest] = held.get(rest, 0) + 1
    seconds = end - start
    long = [lag for lag in lags if lag > 100]
    rows: list[Row] = [
        (
            "loop lag p50 / p99 / max",
            f"{percentile(lags, 0.5):.1f} / {percentile(lags, 0.99):.1f} / "
            f"{max(lags, default=float('nan')):.0f} ms",
            "a 10 ms sleep's lateness",
        ),
        (
            "loop held > 100 ms",
            f"{len(long)} times, {sum(long) / 1000:.1f} s of {seconds:.0f} s",
            "",
        ),
    ]
    for gen in (1, 2):
        found = pauses[gen]
        rows.append(
            (
                f"GC gen {gen} collections",
                f"{len(found)}, max {max(found, default=0):.0f} ms, "
                f"total {sum(found) / 1000:.2f} s",
                "",
            )
        )
    causes = [
        f"{count * 25:6d} ms  {frames}"
        for frames, count in sorted(held.items(), key=lambda item: -item[1])[:top]
    ]
    return rows, causes


def main_run(args: argparse.Namespace) -> None:
    interval: int = args.interval
    windows = max(1, round(args.seconds / interval))
    seconds = windows * interval  # whole intervals: each monitor is due `windows` times
    workdir = Path(tempfile.mkdtemp(prefix="pingtower-bench-"))
    data_dir = workdir / "data"
    env = up_env(
        PINGTOWER_MIN_INTERVAL_SECONDS=str(min(10, interval)),
        # All monitors share one local host; a real fleet spreads over many hosts.
        PINGTOWER_PROBE_PER_TARGET_CONCURRENCY=str(args.per_target),
    )
    heap = Path(args.tracemalloc) if args.tracemalloc else None
    window_heap = Path(args.tracemalloc_window) if args.tracemalloc_window else None
    launcher = ["pingtower.cli"]
    lag_log = workdir / "loop-lag.log" if args.loop_lag else None
    if lag_log is not None:
        launcher = ["bench.loop_lag_cli", str(lag_log)]
    if heap is not None:
        launcher = ["bench.tracemalloc_cli", str(heap)]
    if window_heap is not None:
        launcher = ["bench.tracemalloc_cli", str(window_heap), "--later"]
    process = EmbeddedProcess(data_dir, workdir / "pingtower.log", env, launcher)
    base = process.base
    with LocalNginx(workers=1) as nginx:
        process.start(ready_timeout=300 if heap is not None else 60)
        try:
            token = process.admin_token()
            rss_before = process_rss_kib(process.pid)
            if heap is not None:
                take_heap_snapshot(process.pid, Path(f"{heap}.1"))
            created = time.monotonic()
            bodies = monitor_bodies(nginx.url, args.monitors, interval)
            asyncio.run(create_monitors(base, token, bodies))
            print(f"created {args.monitors} monitors in {time.monotonic() - created:.1f} s")
            # The window measures the steady state: it opens once the import's events (a
            # monitor.created and a first status change per monitor) have reached every
            # consumer, and no sooner than `--settle`. Round 9's fixed settle let one run of
            # three measure while they were still being relayed (bench/README.md, round 10).
            settled = time.monotonic() + max(args.settle, interval + 2)
            relayed = import_relayed(
                data_dir / "pinger.sqlite3", 2 * args.monitors, timeout=args.import_timeout
            )
            if relayed is None:
                print(f"the import's events were not all relayed in {args.import_timeout} s")
            else:
                print(f"the import's events reached every consumer {relayed:.0f} s after it")
            time.sleep(max(0.0, settled - time.monotonic()))
            batches_start = consumer_counts(base)
            print(f"measuring for {seconds} s ({windows} x {interval} s)")
            slices = []  # CPU share per interval: shows a backlog draining or a steady cost
            profiler = start_profiler(args.profile, process.pid, seconds)
            # Exactly `seconds` of scheduled times: each monitor is due `windows` times in it.
            # The window used to run from before the /metrics request above to the end of the
            # sleeps, that request's time longer (3 s on a busy process): 0.6 to 5 % more
            # checks than due were counted.
            # The resident set at each interval's end: whether it levels off or keeps growing.
            resident: list[int] = []
            if heap is not None:
                take_heap_snapshot(process.pid, Path(f"{heap}.2"))
            if window_heap is not None:
                os.kill(process.pid, signal.SIGUSR2)  # tracing starts
            start = datetime.now(UTC)
            end = start + timedelta(seconds=seconds)
            cpu_start = process_cpu_seconds(process.pid)
            for _ in range(windows):
                before = process_cpu_seconds(process.pid)
                time.sleep(interval)
                slices.append((process_cpu_seconds(process.pid) - before) / interval)
                resident.append(process_rss_kib(process.pid))
            cpu = process_cpu_seconds(process.pid) - cpu_start
            rss_after = process_rss_kib(process.pid)
            batches_end = consumer_counts(base)
            if heap is not None:
                take_heap_snapshot(process.pid, Path(f"{heap}.3"))
            if window_heap is not None:
                take_heap_snapshot(process.pid, Path(f"{window_heap}.1"))
            if profiler is not None:
                profiler.wait(60)
            time.sleep(min(5, interval) + 2)  # the last due checks finish and are stored
        finally:
            process.stop()
    results = read_results(data_dir / "pinger.sqlite3", start, end)
    lateness = [late for late, _ in results]
    failed = sum(1 for _, outcome in results if outcome != "up")
    due = args.monitors * windows
    done = len(results)
    per_check = cpu / done * 1000 if done else float("nan")
    per_monitor = (rss_after - rss_before) / args.monitors
    p50, p99 = percentile(lateness, 0.5), percentile(lateness, 0.99)
    worst = max(lateness, default=float("nan"))
    rows = [
        ("monitors x interval", f"{args.monitors} x {interval} s", ""),
        ("checks done / due", f"{done} / {due} ({done / due:.1%})", "all due checks run"),
        ("checks not UP", str(failed), "0 (the target is up)"),
        ("lateness p50", f"{p50 * 1000:.0f} ms", ""),
        ("lateness p99", f"{p99 * 1000:.0f} ms", f"< {TARGET_P99_S * 1000:.0f} ms"),
        ("lateness max", f"{worst * 1000:.0f} ms", ""),
        ("CPU per check, whole process", f"{per_check:.3f} ms", f"<= {TARGET_CPU_MS} ms"),
        ("CPU used", f"{cpu / seconds:.0%} of one core", ""),
        ("CPU used per interval", " ".join(f"{share:.0%}" for share in slices), ""),
        ("memory per monitor (RSS growth / N)", f"{per_monitor:.1f} KiB", "<= 20 KiB"),
        ("RSS before / after", f"{rss_before // 1024} / {rss_after // 1024} MiB", ""),
        ("RSS per interval, MiB", " ".join(str(kib // 1024) for kib in resident), ""),
    ]
    causes: list[str] = []
    if lag_log is not None:
        lag_rows, causes = loop_lag(lag_log, start.timestamp(), end.timestamp())
        rows += lag_rows
    for consumer, counts in sorted(batches_end.items()):
        earlier = batches_start.get(consumer, ConsumerCounts())
        batches = counts.batches - earlier.batches
        if batches:
            mean = f"{(counts.messages - earlier.messages) / batches:.1f} ({batches:.0f} batches)"
            rows.append((f"mean batch, {consumer}", mean, ""))
        bounds = wait_bounds(earlier.waits, counts.waits)
        if bounds is not None:
            p99, longest = bounds
            rows.append((f"queue wait p99 / max, {consumer}", f"<= {p99:g} / <= {longest:g} s", ""))
    print_rows(rows, 28, "target (issue 3)")
    if causes:
        print("\nwhat held the event loop in stalls over 100 ms (25 ms samples, innermost first):")
        print("\n".join(causes))
    if heap is not None:
        print()
        print("\n".join(heap_growth(Path(f"{heap}.1"), Path(f"{heap}.3"), args.monitors)))
        print("\nof which in the measured window:")
        print("\n".join(heap_growth(Path(f"{heap}.2"), Path(f"{heap}.3"), args.monitors)))
    if window_heap is not None:
        print("\nwhat the window allocated and still held at its end:")
        print("\n".join(heap_growth(None, Path(f"{window_heap}.1"), args.monitors)))
    print(f"\nprocess log: {workdir / 'pingtower.log'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--monitors", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=60, help="measured window (max 600)")
    parser.add_argument("--interval", type=int, default=20)
    parser.add_argument("--per-target", type=int, default=64, help="probe per-host limit")
    parser.add_argument(
        "--settle", type=int, default=0, help="seconds to wait after creating (min interval + 2)"
    )
    parser.add_argument(
        "--import-timeout",
        type=int,
        default=1800,
        help="longest wait for the import's events to reach every consumer (then measure)",
    )
    parser.add_argument("--profile", metavar="PATH", help="py-spy collapsed stacks to PATH")
    parser.add_argument(
        "--loop-lag",
        action="store_true",
        help="record event-loop lag, GC pauses and what held the loop (bench.loop_lag_cli)",
    )
    heap = parser.add_mutually_exclusive_group()  # one launcher runs the process
    heap.add_argument(
        "--tracemalloc",
        metavar="PATH",
        help="heap snapshots to PATH.1 (before the monitors), PATH.2 (window start) and PATH.3 "
        "(window end); the growth per monitor by frame (slow)",
    )
    heap.add_argument(
        "--tracemalloc-window",
        metavar="PATH",
        help="trace the heap from the window's start only, a snapshot to PATH.1 at its end: "
        "what the window allocated and still holds, per monitor by frame",
    )
    args = parser.parse_args()
    args.seconds = min(max(args.seconds, args.interval), 600)
    main_run(args)


if __name__ == "__main__":
    main()
