"""The Notificator's consumer digesting a bulk import: CPU per imported monitor through its real
inbox handler (`skip_unwanted_check_results` over `Inbox.handler` over `EventEffects`, one
transaction per batch, as the bus runs it), on SQLite and optionally on PostgreSQL.

    .venv/bin/python -m bench.notificator_import [--monitors 5000] [--batch 100] [--rule]
        [--postgres URL] [--no-sqlite]

An import of N monitors reaches the Notificator as N `monitor.created`, then, once each monitor
has its first result, N `monitor.status_changed` UNKNOWN -> UP; both go through in batches of
`--batch` (the in-process bus's `max_batch` for this consumer is 100). `--rule` adds a webhook
channel and an enabled "down and recovered of every monitor" rule, so each status change is
matched against a rule (it decides nothing: no alert is open). The envelopes are made
beforehand, as the in-process bus hands them over. "CPU" is the process's CPU time (every
thread: the loop's and aiosqlite's, user + system) per monitor; on PostgreSQL the server's own
CPU is not counted. After the run, every monitor's projection row is checked to be UP. Compare
code versions by running a copy of the old sources with `PYTHONPATH` (bench/README.md,
performance round 8: the notificator's import).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import func, select

from bench._database import throwaway_database
from pingtower.cli import GC_THRESHOLDS
from pingtower.common.events import (
    Envelope,
    MonitorCreated,
    MonitorStatusChanged,
    Status,
    utcnow,
)
from pingtower.common.messaging.bus import BatchHandler
from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.settings import Settings
from pingtower.notificator.consumer import skip_unwanted_check_results
from pingtower.notificator.service import NotificatorComponent
from pingtower.notificator.store.tables import channels, monitors, rules

TENANT = "bench"


def created(monitor_id: uuid.UUID, n: int) -> Envelope:
    return Envelope.wrap(
        MonitorCreated(
            monitor_id=monitor_id,
            name=f"bench-{n}",
            type="http",
            target=f"http://127.0.0.1:8080/{n}",
            tags=["bench"],
            interval_seconds=30,
        ),
        producer="pinger",
        tenant=TENANT,
    )


def first_status(monitor_id: uuid.UUID) -> Envelope:
    return Envelope.wrap(
        MonitorStatusChanged(
            monitor_id=monitor_id,
            previous=Status.UNKNOWN,
            current=Status.UP,
            changed_at=utcnow(),
            reason="first check",
            check_id=uuid.uuid4(),
        ),
        producer="pinger",
        tenant=TENANT,
    )


async def add_rule(component: NotificatorComponent) -> None:
    now = utcnow()
    channel_id = uuid.uuid4()
    async with component.sessions() as session, session.begin():
        await session.execute(
            channels.insert().values(
                id=channel_id, tenant=TENANT, name="hook", type="webhook",
                settings={"url": "http://127.0.0.1:9/hook"}, secrets=None, enabled=True,
                rate_limit_per_minute=None, quiet_hours=None, created_at=now, updated_at=now,
            )
        )  # fmt: skip
        await session.execute(
            rules.insert().values(
                id=uuid.uuid4(), tenant=TENANT, name="everything", monitor_ids=[], tags=[],
                events=["down", "recovered"], channel_ids=[str(channel_id)], delay_seconds=0,
                reminder_interval_seconds=0, reminder_count=0, severity="critical",
                enabled=True, flap_threshold=0, flap_window_seconds=600,
                group_window_seconds=0, escalation_channel_ids=[], escalate_after_seconds=0,
                latency_threshold_ms=None, latency_checks=3, cert_expiry_days=[],
                created_at=now, updated_at=now,
            )
        )  # fmt: skip


async def timed(handle: BatchHandler, batches: list[list[Envelope]]) -> tuple[float, float]:
    """(process CPU, wall) seconds to hand every batch to `handle`."""
    cpu, wall = time.process_time(), time.perf_counter()
    for batch in batches:
        await handle(batch)
    return time.process_time() - cpu, time.perf_counter() - wall


async def measure(url: str, data_dir: Path, count: int, batch: int, with_rule: bool) -> str:
    settings = Settings(notificator_database_url=url, data_dir=data_dir)
    component = NotificatorComponent(settings, InProcessBus())
    await component.prepare()
    try:
        if with_rule:
            await add_rule(component)
        sessions = component.sessions
        handle = skip_unwanted_check_results(
            sessions, component.inbox.handler(sessions, component.effects)
        )
        ids = [uuid.uuid4() for _ in range(count)]
        creations = [created(m, n) for n, m in enumerate(ids)]
        changes = [first_status(m) for m in ids]
        # As `pingtower up` runs once started (cli.py): what exists now lives on, frozen, and
        # the collector's thresholds raised.
        thresholds = gc.get_threshold()
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        created_cpu, created_wall = await timed(
            handle, [creations[i : i + batch] for i in range(0, count, batch)]
        )
        status_cpu, status_wall = await timed(
            handle, [changes[i : i + batch] for i in range(0, count, batch)]
        )
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        async with sessions() as session:
            up = await session.scalar(
                select(func.count()).select_from(monitors).where(monitors.c.status == "up")
            )
        if up != count:
            raise AssertionError(f"{up} of {count} monitors are UP in the projection")
        per = 1e6 / count  # microseconds per monitor
        return (
            f"{url.split(':')[0]:<20} {count:>6,} monitors{' +rule' if with_rule else '':6}"
            f" per monitor: created {created_cpu * per:6.1f} us CPU"
            f" ({created_wall * per:6.1f} wall), first status {status_cpu * per:6.1f} us CPU"
            f" ({status_wall * per:6.1f} wall), both {(created_cpu + status_cpu) * per:6.1f} us"
        )
    finally:
        await component.engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--monitors", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=100, help="events per batch")
    parser.add_argument("--rule", action="store_true", help="an enabled rule for every monitor")
    parser.add_argument("--postgres", default=None, help="a PostgreSQL server URL to run on too")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} (the machine may be shared)")
    with tempfile.TemporaryDirectory() as folder:
        if not args.no_sqlite:
            url = f"sqlite+aiosqlite:///{Path(folder) / 'notificator.sqlite3'}"
            print(await measure(url, Path(folder), args.monitors, args.batch, args.rule))
        if args.postgres:
            async with throwaway_database(args.postgres, "pt_bench_notificator") as url:
                print(await measure(url, Path(folder), args.monitors, args.batch, args.rule))


if __name__ == "__main__":
    asyncio.run(main())
