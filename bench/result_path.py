"""A check result's way from the probe to the consumers' handlers, in CPU per result.

    .venv/bin/python -m bench.result_path [--results 20000] [--wave 500] [--rounds 3]
                                          [--before-src /tmp/old/src] [--after-src src]
    .venv/bin/python -m bench.result_path --http [--rate 750] [--seconds 20] [--rounds 3]
                                          [--before-src /tmp/old/src] [--after-src src]

What the embedded mode pays for a result between the end of its check and the start of the
consumers' handlers: `Probe.handle`/`Probe.run` after the check (the `CheckCompleted`, its
envelope), the probe's `ResultPublisher`, `InProcessBus.publish`, the consumer tasks' batching
and `deliver_batch`, and the settling that lets the publisher return. The check itself is a
registered no-op that returns a fixed result at once, and the three consumers of
check.completed (as in `pingtower up`: evaluator, statistics, notificator) are no-op batch
handlers, so what is measured is the path alone. Rows:

- "whole path": `Probe.handle` for every job, `--wave` jobs at a time, until each result is
  settled by all three handlers;
- "building": `Probe.run` and `Envelope.wrap`, no bus;
- "bus": `InProcessBus.publish` of prebuilt envelopes (`--wave` per call) to the three handlers.

With `--http`, the probe's whole embedded path for real HTTP checks instead ("paced HTTP"):
jobs as the scheduler publishes them (`publish_jobs`, a batch every 20 ms at `--rate` jobs a
second, one settings dict per monitor shared by its jobs) are taken by the in-process bus's job
consumers and `Probe.handle`, checked against a local nginx, and their results go to the same
three no-op handlers; CPU per check is the process's over the run (pacing included, as small
as the bus's feed), after a first run of each of the 3,000 monitors that is not counted (as in
a process that has been up a while: what each monitor's settings imply is prepared). Paced,
not as fast as it goes: the embedded probe runs a few checks per loop iteration, and the costs
per iteration and per task do not spread over a crowd of them.

With `--before-src`, each round runs the benchmark once with that copy of the sources first on
`PYTHONPATH` ("before") and once with the working tree, or `--after-src` ("after"),
alternating, each in a fresh process. CPU is the process's user + system time
(`time.process_time`) divided by the results.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import uvloop
from pydantic import BaseModel

from bench.local_nginx import LocalNginx
from pingtower.cli import GC_THRESHOLDS
from pingtower.common.events import CheckJob, Envelope, Outcome, utcnow
from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.settings import Settings
from pingtower.pinger.checks.base import REGISTRY, Check, CheckContext, CheckResult, get_check
from pingtower.pinger.probe.probe import Probe
from pingtower.pinger.scheduler.jobs import JobTemplate

CHECK_RESULTS_LINGER_SECONDS = 0.25  # as pingtower.app builds the embedded bus
CONSUMERS = ("pinger.evaluator", "statistics.ingest", "notificator")
ROOT = Path(__file__).resolve().parent.parent


class _NoSettings(BaseModel):
    pass


class InstantCheck(Check):
    """A check that is over at once: what follows it is what the benchmark measures."""

    type_name: ClassVar[str] = "bench-instant"
    settings_model: ClassVar[type[BaseModel]] = _NoSettings

    def validate_target(self, target: str) -> str:
        return target

    async def run(self, job: CheckJob, context: CheckContext) -> CheckResult:
        return CheckResult(
            Outcome.UP,
            latency_ms=1.25,
            status_code=200,
            size_bytes=612,
            phases_ms={"connect": 0.2, "first_byte": 0.9},
        )


def _jobs(count: int) -> list[Envelope]:
    now = utcnow()
    monitors = [uuid.uuid4() for _ in range(min(count, 3000))]
    return [
        Envelope.wrap(
            CheckJob(
                monitor_id=monitors[index % len(monitors)],
                check_type=InstantCheck.type_name,
                target=f"http://127.0.0.1:{8000 + index % 50}/",
                timeout_seconds=10,
                scheduled_at=now,
                deadline=now + timedelta(hours=1),
            ),
            producer="pinger.scheduler",
            tenant="default",
        )
        for index in range(count)
    ]


def _bus(received: list[int]) -> InProcessBus:
    bus = InProcessBus(linger_by_type={"check.completed": CHECK_RESULTS_LINGER_SECONDS})
    for name in CONSUMERS:

        async def handler(batch: Sequence[Envelope]) -> None:
            for envelope in batch:
                envelope.id  # noqa: B018 - what an inbox reads of every message
            received[0] += len(batch)

        bus.subscribe(name, ["check.completed"], handler)
    return bus


async def whole_path(results: int, wave: int) -> float:
    received = [0]
    bus = _bus(received)
    probe = Probe(bus, Settings(allow_private_targets=True, probe_concurrency=wave))
    jobs = _jobs(results)
    await bus.start()
    await probe.start()
    try:
        started = time.process_time()
        for start in range(0, results, wave):
            await asyncio.gather(*(probe.handle(job) for job in jobs[start : start + wave]))
        spent = time.process_time() - started
    finally:
        await probe.stop()
        await bus.close()
    assert received[0] == results * len(CONSUMERS), received
    return spent / results


async def building(results: int) -> float:
    probe = Probe(_bus([0]), Settings(allow_private_targets=True))
    jobs = [job.parse_as(CheckJob) for job in _jobs(results)]
    started = time.process_time()
    for job in jobs:
        Envelope.wrap(await probe.run(job), producer="pinger.probe", tenant="default")
    return (time.process_time() - started) / results


async def bus_only(results: int, wave: int) -> float:
    received = [0]
    bus = _bus(received)
    probe = Probe(bus, Settings(allow_private_targets=True))
    events = [
        Envelope.wrap(await probe.run(job.parse_as(CheckJob)), producer="p", tenant="default")
        for job in _jobs(results)
    ]
    await bus.start()
    try:
        started = time.process_time()
        for start in range(0, results, wave):
            await bus.publish(events[start : start + wave])
        spent = time.process_time() - started
    finally:
        await bus.close()
    assert received[0] == results * len(CONSUMERS), received
    return spent / results


async def measure(results: int, wave: int) -> dict[str, float]:
    REGISTRY[InstantCheck.type_name] = InstantCheck()
    await building(min(results, 2000))  # warm-up: imports, caches
    return {
        "whole": await whole_path(results, wave) * 1e6,
        "building": await building(results) * 1e6,
        "bus": await bus_only(results, wave) * 1e6,
    }


MONITORS = 3000  # distinct monitors (settings dicts, job templates) of the paced run
TICK = 0.02  # seconds between the paced run's job batches


def _http_jobs(url: str, count: int) -> list[Envelope]:
    """`count` jobs of `MONITORS` monitors, made as the scheduler makes them (a template per
    monitor, its settings as the API stores them: one dict that its jobs share), one run of
    every monitor after another."""
    target, settings = get_check("http").validate(url, {})
    templates = [
        JobTemplate(
            monitor_id=uuid.uuid4(),
            tenant="default",
            check_type="http",
            target=target,
            settings=dict(settings),
            timeout_seconds=10,
            region="default",
        )
        for _ in range(MONITORS)
    ]
    now = utcnow()
    deadline = now + timedelta(hours=1)
    return [templates[index % MONITORS].envelope(now, deadline) for index in range(count)]


async def _paced(bus: InProcessBus, jobs: list[Envelope], rate: int, received: list[int]) -> None:
    """Publishes `jobs` at `rate` a second; returns once the consumers have all their results."""
    loop = asyncio.get_running_loop()
    per_tick = max(1, round(rate * TICK))
    expected = received[0] + len(jobs) * len(CONSUMERS)
    next_tick = loop.time()
    for start in range(0, len(jobs), per_tick):
        await bus.publish_jobs([(job, "default") for job in jobs[start : start + per_tick]])
        next_tick += TICK
        await asyncio.sleep(max(0.0, next_tick - loop.time()))
    give_up = loop.time() + 60
    while received[0] < expected and loop.time() < give_up:
        await asyncio.sleep(0.01)  # a benchmark's wait for its last results, not a test's
    assert received[0] == expected, (received[0], expected)


async def paced_http(url: str, rate: int, seconds: float) -> tuple[float, float]:
    """CPU per check of the embedded probe's path at `rate` jobs a second (module docstring),
    after a first run of every monitor (as in a process that has been up for a while: what a
    monitor's settings imply is prepared)."""
    received = [0]
    bus = _bus(received)
    probe = Probe(bus, Settings(allow_private_targets=True, probe_per_target_concurrency=64))
    jobs = _http_jobs(url, MONITORS + max(1, round(rate * seconds)))
    await probe.prepare()
    await bus.start()
    await probe.start()
    try:
        await _paced(bus, jobs[:MONITORS], rate, received)
        # As `pingtower up` runs once started: the start-up's objects frozen, rare collections.
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        before = resource.getrusage(resource.RUSAGE_SELF)
        await _paced(bus, jobs[MONITORS:], rate, received)
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        await probe.stop()
        await bus.close()
    checks = len(jobs) - MONITORS
    return (after.ru_utime - before.ru_utime) / checks, (after.ru_stime - before.ru_stime) / checks


async def measure_http(rate: int, seconds: float) -> dict[str, float]:
    with LocalNginx(workers=1) as nginx:
        user, system = await paced_http(nginx.url, rate, seconds)
        return {"paced": (user + system) * 1e6, "user": user * 1e6, "system": system * 1e6}


def _child(
    source: str, results: int, wave: int, http: tuple[int, float] | None = None
) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([source, str(ROOT)]))
    command = [sys.executable, "-m", "bench.result_path", "--child"]
    command += ["--results", str(results), "--wave", str(wave)]
    if http is not None:
        command += ["--http", "--rate", str(http[0]), "--seconds", str(http[1])]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=20_000)
    parser.add_argument("--wave", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before-src", help="a copy of the old sources, for 'before' rows")
    parser.add_argument(
        "--after-src", help="the sources of the 'after' rows (default: the working tree's)"
    )
    parser.add_argument("--http", action="store_true", help="paced HTTP checks (docstring)")
    parser.add_argument("--rate", type=int, default=750, help="--http: jobs a second")
    parser.add_argument("--seconds", type=float, default=20.0, help="--http: seconds of jobs")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if args.http:
            figures = uvloop.run(measure_http(args.rate, args.seconds))
        else:
            figures = asyncio.run(measure(args.results, args.wave))
        print(json.dumps(figures))
        return
    runs: list[tuple[str, str]] = [("after", args.after_src or str(ROOT / "src"))]
    if args.before_src:
        runs.insert(0, ("before", args.before_src))
    if args.http:
        _paced_table(args, runs)
        return
    print(f"{args.results} results, waves of {args.wave}; CPU µs per result")
    print("| code | load avg | whole path | building | bus |")
    print("|---|---|---:|---:|---:|")
    for _ in range(args.rounds):
        for code, source in runs:
            load = " / ".join(f"{value:.2f}" for value in os.getloadavg())
            row: dict[str, Any] = _child(source, args.results, args.wave)
            print(
                f"| {code} | {load} | {row['whole']:.1f} | {row['building']:.1f} "
                f"| {row['bus']:.1f} |",
                flush=True,
            )


def _paced_table(args: argparse.Namespace, runs: list[tuple[str, str]]) -> None:
    print(f"HTTP checks at {args.rate} a second for {args.seconds:g} s, uvloop; CPU µs per check")
    print("| code | load avg | paced HTTP | of which user | system |")
    print("|---|---|---:|---:|---:|")
    for _ in range(args.rounds):
        for code, source in runs:
            load = " / ".join(f"{value:.2f}" for value in os.getloadavg())
            row = _child(source, 0, 0, (args.rate, args.seconds))
            print(
                f"| {code} | {load} | {row['paced']:.1f} | {row['user']:.1f} "
                f"| {row['system']:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
