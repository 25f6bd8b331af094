"""Notificator, end to end: alert latency and delivery rate of one `pingtower up` process (the
embedded mode: scheduler, probe, evaluator, notificator on SQLite) to a local webhook receiver.

    .venv/bin/python -m bench.notificator_latency [--monitors 20] [--burst 200] [--channels 1]
        [--window 8]

1. Latency: N HTTP monitors every 1 s with failures_before_down 2 against a local target, one
   webhook channel and a rule for down/recovered. Once all are UP the target is stopped; for each
   monitor, the time from the stop to the receiver getting its DOWN message, beside the
   configured minimum (interval x confirmations).
2. Delivery rate, through the real delivery path (the decision writes a row in the delivery
   queue, the delivery worker claims, sends and records it): B more monitors, a rule with
   group_window_seconds 0 (a message per monitor), against a second target that is then
   stopped. The receiver holds the requests that arrive until every one of the B x K messages
   is in the delivery queue (read from the Notificator's SQLite file), so the rate is the
   worker's, not the pace of the decisions; then it answers at once and the rate is the
   messages not yet held over the time from the release to the last one. The worker sends up
   to `--window` messages of one channel at once (PINGTOWER_DELIVERY_CHANNEL_CONCURRENCY;
   channels in parallel); `--channels K` spreads the burst over K webhook channels.

All load goes to 127.0.0.1; every wait is bounded, and the process and its files are removed.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench._runtime import EmbeddedProcess, create_monitors, process_cpu_seconds, up_env
from bench._table import Row, of_target, print_rows
from bench.local_nginx import free_port
from bench.schedule_keeping import percentile

INTERVAL_S = 1
CONFIRMATIONS = 2
TARGET_LATENCY_OVER_MIN_S = 2.0  # p95 within this of interval x confirmations
TARGET_DELIVERIES_PER_S = 50.0


class LocalServer:
    """An aiohttp application on a free loopback port; `stop()` closes the port."""

    def __init__(self) -> None:
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class Target(LocalServer):
    """What the monitors probe; once stopped, checks see a refused connect."""

    def __init__(self) -> None:
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}/health"

    def routes(self, app: web.Application) -> None:
        async def health(_request: web.Request) -> web.Response:
            return web.Response(text="ok")

        app.router.add_get("/health", health)


class Receiver(LocalServer):
    """Webhook receiver: records (monotonic time, path, body); can hold requests on a gate."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[tuple[float, str, dict[str, Any]]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.held = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def routes(self, app: web.Application) -> None:
        async def hook(request: web.Request) -> web.Response:
            body = await request.json()
            if not self.gate.is_set():
                self.held += 1
                await self.gate.wait()
            self.received.append((time.monotonic(), request.path.strip("/"), body))
            return web.Response(status=204)

        app.router.add_post("/{path}", hook)


def monitor_name(body: dict[str, Any]) -> str:
    monitor = body.get("monitor")
    return str(monitor.get("name")) if isinstance(monitor, dict) else str(body.get("title"))


async def wait_until(predicate: Any, timeout: float, what: str, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(every)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


class Api:
    def __init__(self, session: aiohttp.ClientSession, base: str, token: str) -> None:
        self.session = session
        self.base = base
        self.token = token

    async def call(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        async with self.session.request(method, f"{self.base}{path}", **kw) as response:
            if response.status != status:
                raise RuntimeError(f"{method} {path}: {response.status} {await response.text()}")
            return await response.json() if response.content_length != 0 else None

    async def channel(self, name: str, url: str) -> str:
        body = {"name": name, "type": "webhook", "settings": {"url": url}}
        return str((await self.call("POST", "/api/v1/channels", 201, json=body))["id"])

    async def rule(self, name: str, tag: str, channel_ids: list[str]) -> None:
        body = {
            "name": name,
            "tags": [tag],
            "events": ["down", "recovered"],
            "channel_ids": channel_ids,
            "group_window_seconds": 0,
        }
        await self.call("POST", "/api/v1/rules", 201, json=body)

    async def monitors(self, prefix: str, tag: str, url: str, count: int) -> dict[str, str]:
        """Creates them; returns name -> id (hex, as the Pinger's SQLite stores it)."""
        bodies = [
            {
                "name": f"{prefix}-{index:05d}",
                "type": "http",
                "target": url,
                "tags": [tag],
                "interval_seconds": INTERVAL_S,
                "timeout_seconds": 1,
                "failures_before_down": CONFIRMATIONS,
            }
            for index in range(count)
        ]
        created = await create_monitors(self.base, self.token, bodies, in_flight=8)
        return {str(monitor["name"]): uuid.UUID(monitor["id"]).hex for monitor in created}

    async def count(self, prefix: str, status: str) -> int:
        total, offset = 0, 0
        while True:
            page = await self.call(
                "GET",
                "/api/v1/monitors",
                params={"q": prefix, "status": status, "limit": 500, "offset": offset},
            )
            items = page["items"]
            total += len(items)
            if len(items) < 500:
                return total
            offset += 500


class Split:
    """What the latency phase leaves for splitting it, once the Pinger's SQLite file is closed:
    monitor name -> id, the wall time of the stop, name -> latency of its DOWN message."""

    ids: dict[str, str]
    stopped_wall: float
    latencies: dict[str, float]


def _wall(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _spread(label: str, values: list[float]) -> Row:
    p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
    text = f"{min(values) * 1000:.0f} / {p50 * 1000:.0f} / {p95 * 1000:.0f} / "
    text += f"{max(values) * 1000:.0f} ms"
    return (f"latency: {label} min/p50/p95/max", text, "")


def split_rows(split: Split, data_dir: Path) -> list[Row]:
    """Detection (the stop to the end of the confirming check, the CONFIRMATIONS-th failure)
    and notification (that to the webhook receiving the DOWN message), per monitor; the
    notification part split again at the Notificator's decision (its delivery row written:
    the Pinger's evaluation, outbox relay and bus, the Notificator's consumer) and at the send's
    start (the delivery worker's wake-up and claim)."""
    since = datetime.fromtimestamp(split.stopped_wall, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    detect, notify, decide, claim, send = [], [], [], [], []
    with (
        sqlite3.connect(f"file:{data_dir / 'pinger.sqlite3'}?mode=ro", uri=True) as pinger,
        sqlite3.connect(f"file:{data_dir / 'notificator.sqlite3'}?mode=ro", uri=True) as notif,
    ):
        for name, latency in split.latencies.items():
            rows = pinger.execute(
                "SELECT finished_at FROM check_results WHERE monitor_id = ? AND outcome != 'up' "
                "AND finished_at >= ? ORDER BY finished_at LIMIT ?",
                (split.ids[name], since, CONFIRMATIONS),
            ).fetchall()
            if len(rows) < CONFIRMATIONS:
                continue
            confirmed = _wall(rows[-1][0])
            detect.append(confirmed - split.stopped_wall)
            notify.append(latency - detect[-1])
            delivery = notif.execute(
                "SELECT d.created_at, a.started_at FROM deliveries d JOIN delivery_attempts a "
                "ON a.delivery_id = d.id AND a.attempt = 1 WHERE d.monitor_id = ? "
                "AND d.kind = 'down' ORDER BY d.created_at LIMIT 1",
                (split.ids[name],),
            ).fetchone()
            if delivery is None:
                continue
            received = split.stopped_wall + latency
            decided, started = _wall(delivery[0]), _wall(delivery[1])
            decide.append(decided - confirmed)
            claim.append(started - decided)
            send.append(received - started)
    if not detect:
        return [("latency split", "no confirming checks found", "")]
    out = [_spread("detection", detect), _spread("notification", notify)]
    if decide:
        out += [
            _spread("  check done → queued", decide),
            _spread("  queued → send starts", claim),
            _spread("  send → received", send),
        ]
    return out


def queued_downs(database: Path, channel_hex: list[str]) -> int:
    """DOWN messages in the Notificator's delivery queue for these channels (any status)."""
    marks = ", ".join("?" * len(channel_hex))
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
        row = db.execute(
            f"SELECT count(*) FROM deliveries WHERE kind = 'down' AND channel_id IN ({marks})",
            channel_hex,
        ).fetchone()
    return int(row[0])


async def measure(
    args: argparse.Namespace, base: str, token: str, split: Split, pid: int, data_dir: Path
) -> list[Row]:
    headers = {"Authorization": f"Bearer {token}"}
    receiver, lat_target, burst_target = Receiver(), Target(), Target()
    await receiver.start()
    await lat_target.start()
    await burst_target.start()
    rows: list[Row] = []
    try:
        async with aiohttp.ClientSession(headers=headers) as session:
            api = Api(session, base, token)
            # 1. latency
            lat_channel = await api.channel("latency hook", receiver.url("latency"))
            await api.rule("latency", "lat", [lat_channel])
            split.ids = await api.monitors("lat", "lat", lat_target.url, args.monitors)

            async def all_up(prefix: str, count: int) -> bool:
                return await api.count(prefix, "up") >= count

            await wait_until(lambda: all_up("lat", args.monitors), 60, "latency monitors UP")
            await asyncio.sleep(2)  # a few more UP checks: steady state
            stopped = time.monotonic()
            split.stopped_wall = time.time()
            await lat_target.stop()

            def down_times() -> dict[str, float]:
                out: dict[str, float] = {}
                for at, path, body in receiver.received:
                    if path == "latency" and body.get("kind") == "down":
                        out.setdefault(monitor_name(body), at - stopped)
                return out

            async def all_down_received() -> bool:
                return len(down_times()) >= int(args.monitors)

            await wait_until(all_down_received, 60, "the DOWN messages", every=0.05)
            split.latencies = down_times()
            latencies = list(split.latencies.values())
            minimum = INTERVAL_S * CONFIRMATIONS
            p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
            target = f"<= {minimum + TARGET_LATENCY_OVER_MIN_S:.1f} s"
            rows += [
                (
                    "latency: monitors",
                    f"{args.monitors} x {INTERVAL_S} s, {CONFIRMATIONS} conf.",
                    "",
                ),
                ("latency: configured minimum", f"{minimum:.1f} s", "interval x confirmations"),
                ("latency: DOWN received", f"{len(latencies)} / {args.monitors}", "all"),
                ("latency: min", f"{min(latencies):.2f} s", ""),
                ("latency: p50", f"{p50:.2f} s", ""),
                (
                    "latency: p95",
                    f"{p95:.2f} s ({p95 / minimum:.2f} x minimum)",
                    of_target(target, p95, minimum + TARGET_LATENCY_OVER_MIN_S),
                ),
                ("latency: max", f"{max(latencies):.2f} s", ""),
            ]

            # 2. delivery rate
            if args.burst:
                channels = [
                    await api.channel(f"burst hook {i}", receiver.url(f"burst{i}"))
                    for i in range(args.channels)
                ]
                await api.rule("burst", "burst", channels)
                created = time.monotonic()
                await api.monitors("burst", "burst", burst_target.url, args.burst)
                print(f"created {args.burst} burst monitors in {time.monotonic() - created:.1f} s")
                await wait_until(lambda: all_up("burst", args.burst), 120, "burst monitors UP")
                await asyncio.sleep(2)
                receiver.gate.clear()
                await burst_target.stop()
                burst_stopped = time.monotonic()

                async def all_burst_down() -> bool:
                    return await api.count("burst", "down") >= int(args.burst)

                await wait_until(all_burst_down, 120, "burst monitors DOWN", every=0.5)
                all_down_after = time.monotonic() - burst_stopped
                queue = data_dir / "notificator.sqlite3"
                burst_hex = [uuid.UUID(c).hex for c in channels]

                async def all_queued() -> bool:
                    return queued_downs(queue, burst_hex) >= int(args.burst * args.channels)

                # The rate is the worker's: every message is in the queue before the release.
                await wait_until(all_queued, 120, "the burst's messages queued", every=0.2)
                queued_after = time.monotonic() - burst_stopped
                released = time.monotonic()
                cpu_released = process_cpu_seconds(pid)
                receiver.gate.set()
                expected = int(args.burst * args.channels)

                def burst_times() -> list[float]:
                    return [
                        at
                        for at, path, body in receiver.received
                        if path.startswith("burst") and body.get("kind") == "down"
                    ]

                async def all_burst_received() -> bool:
                    return len(burst_times()) >= expected

                await wait_until(all_burst_received, 300, "the burst's messages", every=0.05)
                times = burst_times()
                cpu = process_cpu_seconds(pid) - cpu_released
                drained = [at for at in times if at >= released]
                span = max(times) - released
                held = receiver.held
                rate = (len(drained) - held) / span if span > 0 else float("nan")
                rows += [
                    ("rate: path", "delivery queue + worker", "(real path)"),
                    ("rate: monitors x channels", f"{args.burst} x {args.channels}", ""),
                    ("rate: window per channel", f"{args.window} in flight", ""),
                    ("rate: all DOWN after stop", f"{all_down_after:.1f} s", ""),
                    ("rate: all queued after stop", f"{queued_after:.1f} s", ""),
                    ("rate: messages received", f"{len(times)} / {expected}", "all, once"),
                    ("rate: queued at release", f"{len(drained)} ({held} held)", ""),
                    ("rate: drain time", f"{span:.2f} s", ""),
                    ("rate: process CPU while draining", f"{cpu / span:.0%} of one core", ""),
                    (
                        "rate: checks/s meanwhile (DOWN monitors)",
                        f"about {args.burst + args.monitors}",
                        "",
                    ),
                    (
                        "rate: deliveries per second",
                        f"{rate:.0f} /s",
                        of_target(
                            f">= {TARGET_DELIVERIES_PER_S:.0f} /s", rate, TARGET_DELIVERIES_PER_S
                        ),
                    ),
                ]
                seen = [
                    (path, monitor_name(body))
                    for _, path, body in receiver.received
                    if path.startswith("burst") and body.get("kind") == "down"
                ]
                rows.append(("rate: duplicates", str(len(seen) - len(set(seen))), "0"))
    finally:
        await receiver.stop()
        await lat_target.stop()
        await burst_target.stop()
    return rows


def main_run(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="pingtower-bench-notif-"))
    data_dir = workdir / "data"
    env = up_env(
        PINGTOWER_MIN_INTERVAL_SECONDS=str(INTERVAL_S),
        PINGTOWER_PROBE_PER_TARGET_CONCURRENCY="64",
        PINGTOWER_DELIVERY_CHANNEL_CONCURRENCY=str(args.window),
    )
    process = EmbeddedProcess(data_dir, workdir / "pingtower.log", env)
    ok = False
    split = Split()
    try:
        process.start()
        run = measure(args, process.base, process.admin_token(), split, process.pid, data_dir)
        rows = asyncio.run(asyncio.wait_for(run, args.timeout))
        ok = True
    finally:
        process.stop()
        if ok:
            rows[7:7] = split_rows(split, data_dir)
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"process log kept: {workdir / 'pingtower.log'}")
    print_rows(rows, 32, "target (issue 4; ours where it names none)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--monitors", type=int, default=20, help="latency monitors")
    parser.add_argument("--burst", type=int, default=200, help="rate monitors (0: skip)")
    parser.add_argument("--channels", type=int, default=1, help="webhook channels for the rate")
    parser.add_argument("--window", type=int, default=8, help="messages of a channel at once")
    parser.add_argument("--timeout", type=float, default=540, help="bound on the whole run (s)")
    parser.add_argument("--keep", action="store_true", help="keep the data dir and log")
    main_run(parser.parse_args())


if __name__ == "__main__":
    main()
