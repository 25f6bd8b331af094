"""Scale-out: HTTP checks per second done by one, then two probe processes in the distributed
mode (PostgreSQL, RabbitMQ), against a local nginx.

    set -a; . /tmp/testenv.vars; set +a
    .venv/bin/python -m bench.scale_out [--seconds 10] [--feed queue|scheduler] [--jobs-per-pack 16]

It creates a throwaway Pinger database on PINGTOWER_TEST_POSTGRES_URL and a throwaway broker
namespace on PINGTOWER_TEST_RABBITMQ_URL, writes N HTTP monitors straight into the database, and
runs `pingtower serve evaluator` and `serve probe` (and, with --feed scheduler, `serve
scheduler`) as processes. A probe's rate is read from its /metrics
(pingtower_pinger_checks_total) over the measured window; then a second probe joins and the
window is measured again. Target (issue 3): the second probe adds at least 0.8 of the first
one's throughput. Each window also shows the probes' CPU per check and, when the broker runs on
this machine (a `beam.smp` process), RabbitMQ's CPU per check: it is shared, so other clients'
traffic during the window counts too.

The probes must be the bottleneck for the ratio to mean anything. With --feed queue (the
default) the job queue is filled beforehand with jobs for the monitors (deadlines an hour away),
published as the scheduler publishes a tick's (`publish_jobs`: packs of `--jobs-per-pack` jobs
of the region per message; 1 sends each alone, the framing before performance round 8), so the
probes run flat out; the run says if the queue ran dry. With --feed scheduler the
scheduler publishes the jobs of N monitors every interval; its own publishing rate is then
shown, and it caps the probes when it is lower than theirs. Everything the run created is
removed at the end; load goes to 127.0.0.1 only, at most 200,000 checks per window.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import aio_pika

from bench._database import create_database, drop_database, server_url, unique_name
from bench._monitor_rows import http_monitor_row
from bench._runtime import process_cpu_seconds, stop_process, wait_ready
from bench.local_nginx import LocalNginx, free_port
from pingtower.common.messaging.packing import MAX_PACKED_JOBS

TARGET_ADDED = 0.8
MAX_JOBS_PER_WINDOW = 200_000


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def insert_monitors(
    database_url: str, target: str, count: int, interval: int
) -> list[uuid.UUID]:
    from sqlalchemy import insert
    from sqlalchemy.ext.asyncio import create_async_engine

    from pingtower.common.events import utcnow
    from pingtower.pinger.store.states import initial_state_row
    from pingtower.pinger.store.tables import monitor_states, monitors

    now = utcnow()
    rows = [
        http_monitor_row(
            uuid.uuid4(),
            index,
            target=target,
            interval=interval,
            retry_interval=interval,
            stamp=now,
            timeout_seconds=min(5.0, float(interval)),
        )
        for index in range(count)
    ]
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            for start in range(0, count, 1000):
                chunk = rows[start : start + 1000]
                await connection.execute(insert(monitors), chunk)
                states = [initial_state_row(r["id"], "bench", paused=False) for r in chunk]
                await connection.execute(insert(monitor_states), states)
    finally:
        await engine.dispose()
    return [row["id"] for row in rows]


async def fill_queue(
    broker: str,
    namespace: str,
    monitor_ids: list[uuid.UUID],
    target: str,
    count: int,
    jobs_per_pack: int,
) -> None:
    """`count` check jobs for the monitors, round robin, published in batches (confirmations
    awaited together) straight to the region's job queue, `jobs_per_pack` to a message."""
    from datetime import timedelta

    from pingtower.common.events import utcnow
    from pingtower.common.messaging.rabbitmq import RabbitMQBus
    from pingtower.pinger.scheduler.jobs import job_envelope

    bus = RabbitMQBus(broker, namespace=namespace, max_packed_jobs=jobs_per_pack)
    await bus.start()
    try:
        now = utcnow()
        for start in range(0, count, 5000):
            unpublished = await bus.publish_jobs(
                [
                    (
                        job_envelope(
                            monitor_id=monitor_ids[index % len(monitor_ids)],
                            tenant="bench",
                            check_type="http",
                            target=target,
                            settings={},
                            timeout_seconds=5.0,
                            region="default",
                            scheduled_at=now + timedelta(microseconds=index),
                            interval_seconds=3600,
                        ),
                        "default",
                    )
                    for index in range(start, min(count, start + 5000))
                ]
            )
            if unpublished:
                raise RuntimeError(f"{len(unpublished)} jobs not confirmed: {unpublished[0]}")
    finally:
        await bus.close()


async def ready_jobs(broker: str, namespace: str) -> int:
    connection = await aio_pika.connect(broker)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"{namespace}.jobs.default", passive=True)
        return int(queue.declaration_result.message_count or 0)
    finally:
        await connection.close()


def start(name: str, role: str, env: dict[str, str], log_dir: Path) -> Process:
    port = free_port()
    log = (log_dir / f"{name}.log").open("wb")
    popen = subprocess.Popen(
        [sys.executable, "-m", "pingtower.cli", "serve", role, "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return Process(name, popen, port)


def counter(process: Process, name: str) -> float:
    with urllib.request.urlopen(f"{process.base}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def broker_pid() -> int | None:
    """RabbitMQ's Erlang VM on this machine, if there is one (and only one)."""
    found = [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _command_name(entry) == "beam.smp"
    ]
    return found[0] if len(found) == 1 else None


def _command_name(entry: Path) -> str | None:
    try:
        return (entry / "comm").read_text().strip()
    except OSError:  # gone meanwhile, or not ours to read
        return None


@dataclass
class Window:
    probes: int
    rate: float
    per_probe: list[float]
    expired_rate: float
    cpu_shares: list[float]
    published_rate: float | None  # with the scheduler feeding: its publishing rate
    unpublished_rate: float | None  # ... jobs the broker did not take, after a retry
    lateness_s: float | None  # ... and its mean lateness in the window
    ran_dry: bool = False  # with the queue feeding: the queue emptied during the window
    broker_share: float | None = None  # RabbitMQ's CPU (of a core), if it runs here
    # Cores the whole machine kept busy (every process: probes, broker, evaluator, PostgreSQL):
    # near the core count, the second probe can only take CPU from the others.
    machine_busy: float = float("nan")

    @property
    def probe_ms_per_check(self) -> float:
        return 1000 * sum(self.cpu_shares) / self.rate if self.rate else float("nan")

    @property
    def broker_ms_per_check(self) -> float | None:
        if self.broker_share is None or not self.rate:
            return None
        return 1000 * self.broker_share / self.rate


def busy_and_total_jiffies() -> tuple[int, int]:
    """The machine's CPU time since boot from /proc/stat: (busy, total), in clock ticks."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def measure(scheduler: Process | None, probes: list[Process], seconds: float) -> Window:
    def scheduler_counters() -> tuple[float, float, float, float]:
        if scheduler is None:
            return (0.0, 0.0, 0.0, 0.0)
        return (
            counter(scheduler, "pingtower_pinger_jobs_published_total"),
            counter(scheduler, "pingtower_pinger_jobs_unpublished_total"),
            counter(scheduler, "pingtower_pinger_schedule_lateness_seconds_sum"),
            counter(scheduler, "pingtower_pinger_schedule_lateness_seconds_count"),
        )

    sched_before = scheduler_counters()
    checks = [counter(p, "pingtower_pinger_checks_total") for p in probes]
    expired = [counter(p, "pingtower_pinger_jobs_expired_total") for p in probes]
    cpu = [process_cpu_seconds(p.popen.pid) for p in probes]
    broker = broker_pid()
    broker_cpu = process_cpu_seconds(broker) if broker is not None else 0.0
    machine_before = busy_and_total_jiffies()
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    machine_after = busy_and_total_jiffies()
    cores = len(os.sched_getaffinity(0))
    machine_busy = (
        cores
        * (machine_after[0] - machine_before[0])
        / max(1, machine_after[1] - machine_before[1])
    )
    broker_share = (
        (process_cpu_seconds(broker) - broker_cpu) / elapsed if broker is not None else None
    )
    per_probe = [
        (counter(p, "pingtower_pinger_checks_total") - before) / elapsed
        for p, before in zip(probes, checks, strict=True)
    ]
    expired_total = sum(
        counter(p, "pingtower_pinger_jobs_expired_total") - before
        for p, before in zip(probes, expired, strict=True)
    )
    shares = [
        (process_cpu_seconds(p.popen.pid) - before) / elapsed
        for p, before in zip(probes, cpu, strict=True)
    ]
    published, unpublished, late_sum, late_count = (
        after - before for after, before in zip(scheduler_counters(), sched_before, strict=True)
    )
    return Window(
        len(probes),
        sum(per_probe),
        per_probe,
        expired_total / elapsed,
        shares,
        published / elapsed if scheduler is not None else None,
        unpublished / elapsed if scheduler is not None else None,
        late_sum / late_count if scheduler is not None and late_count else None,
        broker_share=broker_share,
        machine_busy=machine_busy,
    )


async def delete_broker_names(url: str, namespace: str) -> None:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        for queue in ("jobs.default", "pinger.evaluator", "dead-letters"):
            await channel.queue_delete(f"{namespace}.{queue}")
        for exchange in ("events", "jobs", "dlx"):
            await channel.exchange_delete(f"{namespace}.{exchange}")
    finally:
        await connection.close()


def run(args: argparse.Namespace) -> None:
    postgres = os.environ.get("PINGTOWER_TEST_POSTGRES_URL")
    broker = os.environ.get("PINGTOWER_TEST_RABBITMQ_URL")
    if not postgres or not broker:
        sys.exit("needs PINGTOWER_TEST_POSTGRES_URL and PINGTOWER_TEST_RABBITMQ_URL")
    database = unique_name("pt_bench")
    database_url = f"{server_url(postgres)}/{database}"
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    log_dir = Path(tempfile.mkdtemp(prefix="pingtower-scale-out-"))
    env = {
        **os.environ,
        "PINGTOWER_PINGER_DATABASE_URL": database_url,
        "PINGTOWER_BROKER_URL": broker,
        "PINGTOWER_BROKER_NAMESPACE": namespace,
        "PINGTOWER_ADMIN_TOKEN": secrets.token_urlsafe(24),
        "PINGTOWER_ALLOW_PRIVATE_TARGETS": "true",
        "PINGTOWER_MIN_INTERVAL_SECONDS": "1",
        "PINGTOWER_PROBE_CONCURRENCY": str(args.concurrency),
        # All monitors share one local host; a real fleet spreads over many hosts.
        "PINGTOWER_PROBE_PER_TARGET_CONCURRENCY": str(args.concurrency),
        "PINGTOWER_LOG_LEVEL": "warning",
    }
    processes: list[Process] = []
    queue_fed = args.feed == "queue"
    fill = min(MAX_JOBS_PER_WINDOW, int(args.fill_rate * (args.seconds + 5)))
    asyncio.run(create_database(postgres, database))
    try:
        with LocalNginx(workers=1, delay_ms=args.target_delay_ms) as nginx:
            subprocess.run(
                [sys.executable, "-m", "pingtower.cli", "migrate", "pinger"],
                env=env,
                check=True,
                capture_output=True,
            )
            ids = asyncio.run(
                insert_monitors(database_url, nginx.url, args.monitors, args.interval)
            )
            roles = ["evaluator"] if queue_fed else ["scheduler", "evaluator"]
            processes.extend(start(role, role, env, log_dir) for role in roles)
            for process in processes:
                wait_ready(process.base, process.popen, process.name)
            scheduler = None if queue_fed else processes[0]
            if queue_fed:
                print(
                    f"{args.monitors} monitors; {fill} jobs queued before each window, "
                    f"{args.jobs_per_pack} to a message"
                )
            else:
                offered = args.monitors / args.interval
                print(f"{args.monitors} monitors x {args.interval} s: {offered:.0f} checks/s due")
            probes: list[Process] = []
            windows: list[Window] = []
            for count in (1, 2):
                # The probes already running are stopped while the queue is filled and the new
                # one starts: they used to drain the queue meanwhile (7,000 checks a second),
                # and the two-probe window ran dry. A stopped probe keeps its prefetched jobs.
                paused = [probe.popen for probe in probes] if queue_fed else []
                for popen in paused:
                    popen.send_signal(signal.SIGSTOP)
                if queue_fed:
                    asyncio.run(
                        fill_queue(broker, namespace, ids, nginx.url, fill, args.jobs_per_pack)
                    )
                probes.append(start(f"probe-{count}", "probe", env, log_dir))
                processes.append(probes[-1])
                wait_ready(probes[-1].base, probes[-1].popen, probes[-1].name)
                for popen in paused:
                    popen.send_signal(signal.SIGCONT)
                # Warm-up: the new probe's connections and caches; with the scheduler, every
                # monitor has had its slot.
                time.sleep(2 if queue_fed else args.interval + 3)
                window = measure(scheduler, probes, args.seconds)
                if queue_fed:
                    window.ran_dry = asyncio.run(ready_jobs(broker, namespace)) == 0
                windows.append(window)
            one, two = windows
    finally:
        for process in reversed(processes):
            stop_process(process.popen)
        asyncio.run(drop_database(postgres, database))
        asyncio.run(delete_broker_names(broker, namespace))
    report(args, one, two, log_dir)


def report(args: argparse.Namespace, one: Window, two: Window, log_dir: Path) -> None:
    feed = "a pre-filled job queue" if args.feed == "queue" else "the scheduler"
    print(
        f"\nHTTP checks per second fed by {feed}, {args.seconds:g} s windows, "
        f"probe concurrency {args.concurrency}"
        + (f", target answering after {args.target_delay_ms} ms" if args.target_delay_ms else "")
    )
    header = (
        f"{'probes':>6} {'checks/s':>9} {'per probe':>14} {'expired/s':>10} "
        f"{'probe CPU (of a core)':>22} {'probe ms/check':>15} {'broker CPU':>11} "
        f"{'broker ms/check':>16} {'machine busy':>13} {'published/s':>12} "
        f"{'unpublished/s':>14} {'lateness':>9}"
    )
    print(header)
    print("-" * len(header))
    for window in (one, two):
        per_probe = " + ".join(f"{rate:.0f}" for rate in window.per_probe)
        shares = " + ".join(f"{share:.0%}" for share in window.cpu_shares)
        published = f"{window.published_rate:.0f}" if window.published_rate is not None else "-"
        lost = f"{window.unpublished_rate:.0f}" if window.unpublished_rate is not None else "-"
        late = f"{window.lateness_s:.2f} s" if window.lateness_s is not None else "-"
        dry = "  (queue ran dry: a lower bound)" if window.ran_dry else ""
        broker = f"{window.broker_share:.0%}" if window.broker_share is not None else "-"
        broker_ms = window.broker_ms_per_check
        per_check = f"{broker_ms:.2f}" if broker_ms is not None else "-"
        print(
            f"{window.probes:>6} {window.rate:>9.0f} {per_probe:>14} "
            f"{window.expired_rate:>10.0f} {shares:>22} {window.probe_ms_per_check:>15.2f} "
            f"{broker:>11} {per_check:>16} {window.machine_busy:>7.2f} cores "
            f"{published:>12} {lost:>14} {late:>9}{dry}"
        )
    added = (two.rate - one.rate) / one.rate if one.rate else float("nan")
    print(
        f"\nthe second probe adds {added:.2f} of the first one's throughput "
        f"(target >= {TARGET_ADDED}); cores: {len(os.sched_getaffinity(0))}; "
        f"load average: {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    # On a machine whose cores are all busy the second probe takes CPU from the first (and
    # the broker, nginx, the evaluator): what it adds then says more about the machine. What
    # each CPU-second of the probes does says whether two probes cost more per check than one.
    per_cpu = [window.rate / sum(window.cpu_shares) for window in (one, two)]
    print(
        f"checks per CPU-second of the probes: {per_cpu[0]:.0f} with one, {per_cpu[1]:.0f} "
        f"with two ({per_cpu[1] / per_cpu[0]:.2f} of one's)"
    )
    print(f"process logs: {log_dir}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feed", choices=["queue", "scheduler"], default="queue")
    parser.add_argument("--monitors", type=int, default=2000)
    parser.add_argument(
        "--interval", type=int, default=10, help="seconds (min 1; --feed scheduler)"
    )
    parser.add_argument(
        "--fill-rate",
        type=float,
        # 3,000 ran the queue dry in the two-probe window: the first probe goes on taking jobs
        # while the second window's jobs are queued and the second probe starts.
        default=8000,
        help="checks/s the queue is filled for (--feed queue; at most 200,000 jobs a window)",
    )
    parser.add_argument("--seconds", type=float, default=10, help="per window (max 120)")
    parser.add_argument("--concurrency", type=int, default=128, help="checks per probe at once")
    parser.add_argument(
        "--target-delay-ms",
        type=int,
        default=0,
        help="the target answers after this long, as one across a network: a probe is then "
        "bound by --concurrency / delay, not by its CPU (nginx's echo module)",
    )
    parser.add_argument(
        "--jobs-per-pack",
        type=int,
        default=MAX_PACKED_JOBS,
        help="jobs of the region in one message when the queue is filled (--feed queue; "
        "1: each alone)",
    )
    args = parser.parse_args()
    args.interval = max(1, args.interval)
    args.seconds = min(max(args.seconds, 5.0), 120.0)
    args.monitors = min(max(args.monitors, 1), 50_000)
    args.jobs_per_pack = max(1, args.jobs_per_pack)
    args.target_delay_ms = min(max(args.target_delay_ms, 0), 10_000)
    run(args)


if __name__ == "__main__":
    main()
