"""Probe throughput: HTTP and TCP checks per second, and CPU time per check, of the probe's own
check code against a local nginx, beside wrk and bare client loops in the same run; and ICMP
echoes per second to 127.0.0.1 through the probe's shared ICMP socket.

    .venv/bin/python -m bench.probe_throughput [--seconds 5] [--concurrency 50] [--no-uvloop]
                                               [--icmp-only | --no-icmp]

Every client opens a fresh connection per request, as a check does. The Python clients run in
this process one after the other; "CPU ms/check" is this process's CPU time (user + system)
divided by the checks done, so it excludes nginx. Targets come from issue 3: at least 0.45 of
wrk's rate, at most 0.1 ms of CPU per check; at least 20,000 ICMP echoes per second. Load goes
to 127.0.0.1 only, and the ICMP rows are bounded (at most 100,000 echoes and 5 s each). ICMP
needs root, CAP_NET_RAW or a net.ipv4.ping_group_range that allows datagram ICMP sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp

from bench.local_nginx import LocalNginx
from pingtower.common.events import CheckCompleted, CheckJob, Envelope, Outcome, utcnow
from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.settings import Settings
from pingtower.pinger.checks.base import CheckContext, get_check
from pingtower.pinger.checks.http_client import HttpClient, HttpClientError, Request
from pingtower.pinger.checks.icmp_socket import EchoSocket, IcmpUnavailableError, open_icmp_socket
from pingtower.pinger.probe.probe import Probe

TARGET_RATIO = 0.45
TARGET_CPU_MS = 0.1
TARGET_ECHOES = 20_000
MAX_ECHOES = 100_000
MAX_ICMP_SECONDS = 5.0


@dataclass
class Row:
    client: str
    rate: float
    cpu_ms: float | None
    errors: int = 0


def run_wrk(url: str, seconds: float, concurrency: int) -> Row:
    wrk = shutil.which("wrk")
    if wrk is None:
        return Row("wrk (not installed: apt-get install -y wrk)", float("nan"), None)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = subprocess.run(
        [
            wrk,
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "-H",
            "Connection: close",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    rate = float(match.group(1)) if match else float("nan")
    requests = rate * max(1, round(seconds))
    cpu_ms = cpu / requests * 1000 if requests > 0 else None
    return Row("wrk -t1 (C, HTTP/1.1, Connection: close)", rate, cpu_ms, _sum(errors))


def _sum(match: re.Match[str] | None) -> int:
    return sum(int(g) for g in match.groups()) if match else 0


async def closed_loop(
    name: str,
    seconds: float,
    concurrency: int,
    once: Callable[[], Awaitable[bool]],
    max_total: int | None = None,
) -> Row:
    """`concurrency` workers calling `once` back to back for `seconds` (or until `max_total`
    calls); rate and CPU/check."""
    done = 0
    errors = 0
    stop_at = time.monotonic() + seconds
    limit = max_total if max_total is not None else float("inf")

    async def worker() -> None:
        nonlocal done, errors
        while time.monotonic() < stop_at and done + errors < limit:
            if await once():
                done += 1
            else:
                errors += 1

    cpu = time.process_time()
    wall = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    total = done + errors
    return Row(name, done / wall, cpu / total * 1000 if total else None, errors)


async def bare_aiohttp(url: str, seconds: float, concurrency: int) -> Row:
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def once() -> bool:
            try:
                async with session.get(url) as response:
                    await response.read()
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        return await closed_loop("bare aiohttp, fresh connections", seconds, concurrency, once)


def job(check_type: str, target: str, **settings: Any) -> CheckJob:
    """A job as the scheduler sends it: the settings as the API stores them (every field)."""
    now = utcnow()
    target, normalised = get_check(check_type).validate(target, settings)
    return CheckJob(
        monitor_id=uuid.uuid4(),
        check_type=check_type,
        target=target,
        settings=normalised,
        timeout_seconds=10,
        scheduled_at=now,
        deadline=now + timedelta(hours=1),
    )


class _NoBus(InProcessBus):
    """Takes the probe's results and does nothing with them: the rows measure the probe, not
    the bus (bench.result_path and bench.bus_costs measure that)."""

    published = 0
    last: Envelope | None = None

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        self.published += len(envelopes)
        self.last = envelopes[-1]

    async def hand_over(self, envelopes: Sequence[Envelope]) -> None:
        # the probe's way out since 0598f98; the in-process bus's own queues them for consumers
        await self.publish(envelopes)


async def probe_checks(
    check_type: str, target: str, seconds: float, concurrency: int, **check_settings: Any
) -> Row:
    """The probe's path for a job minus the bus: `Probe.handle` of the job as the in-process
    bus delivers it (the scheduler's contract, wrapped), with its gates, the check,
    `check.completed` and its envelope, the metrics, and the publisher's batching and
    confirmation. The embedded mode's path; a job from RabbitMQ is validated from its bytes
    first (bench.scale_out). One target host, so the per-host limit is the concurrency."""
    settings = Settings(
        allow_private_targets=True,
        probe_concurrency=concurrency,
        probe_per_target_concurrency=concurrency,
    )
    bus = _NoBus()
    probe = Probe(bus, settings)
    envelope = Envelope.wrap(job(check_type, target, **check_settings), producer="b", tenant="b")

    async def once() -> bool:
        published = bus.published
        await probe.handle(envelope)
        return bus.published > published  # the result went out (not dropped as expired)

    try:
        await probe.start()
        row = await closed_loop(f"probe {check_type} check", seconds, concurrency, once, MAX_ECHOES)
    finally:
        await probe.stop()
    completed = bus.last.parse_as(CheckCompleted) if bus.last is not None else None
    if completed is None or completed.outcome != Outcome.UP:
        error = f"{completed.error_kind}: {completed.error_message}" if completed else "none"
        row.client += f" (last result {error[:60]})"
    return row


async def lean_client(url: str, seconds: float, concurrency: int) -> Row:
    """The HTTP check's client alone (connect, request, httptools parse, close)."""
    client = HttpClient(allow_private=True)
    request = Request(
        method="GET",
        url=url,
        headers={},
        body=None,
        max_body=1_048_576,
        verify_tls=True,
        follow_redirects=True,
        max_redirects=5,
    )

    async def once() -> bool:
        try:
            return (await client.request(request)).status == 200
        except HttpClientError:
            return False

    return await closed_loop("  of which the lean HTTP client alone", seconds, concurrency, once)


async def check_alone(check_type: str, target: str, seconds: float, concurrency: int) -> Row:
    """The check type's `run` alone (settings, timeout, client, assertions, result), without
    the probe's job decoding, metrics and event."""
    check = get_check(check_type)
    context = CheckContext(allow_private=True)
    parsed = job(check_type, target)

    async def once() -> bool:
        return (await check.run(parsed, context)).outcome == Outcome.UP

    return await closed_loop(
        f"  of which the {check_type} check's run alone", seconds, concurrency, once
    )


async def bare_tcp(host: str, port: int, seconds: float, concurrency: int) -> Row:
    async def once() -> bool:
        try:
            _reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            return False
        writer.close()
        await writer.wait_closed()
        return True

    return await closed_loop("bare asyncio open_connection", seconds, concurrency, once)


async def shared_socket_echoes(seconds: float, in_flight: int) -> Row:
    echo_socket = EchoSocket(socket.AF_INET)
    kind = "raw" if echo_socket.raw else "datagram"

    async def once() -> bool:
        return await echo_socket.echo("127.0.0.1", 1.0) is not None

    try:
        return await closed_loop(
            f"shared {kind} ICMP socket, {in_flight} in flight",
            seconds,
            in_flight,
            once,
            MAX_ECHOES,
        )
    finally:
        echo_socket.close()


async def socket_per_echo(seconds: float, concurrency: int) -> Row:
    """The naive way, for comparison: open an ICMP socket, send, await the reply, close."""
    from pingtower.pinger.domain.ping import echo_request, parse_echo_reply

    loop = asyncio.get_running_loop()
    identifiers = iter(range(1 << 30))

    async def once() -> bool:
        sock, raw = open_icmp_socket(socket.AF_INET)
        try:
            identifier = next(identifiers) & 0xFFFF
            sock.sendto(echo_request(identifier, 1, b"x" * 32), ("127.0.0.1", 0))
            async with asyncio.timeout(1.0):
                while True:
                    reply = parse_echo_reply(await loop.sock_recv(sock, 2048), has_ip_header=raw)
                    # A datagram socket only sees its own replies; a raw one sees everything.
                    if reply is not None and (not raw or reply == (identifier, 1)):
                        return True
        except TimeoutError:
            return False
        finally:
            sock.close()

    return await closed_loop(
        f"socket per echo, {concurrency} concurrent", seconds, concurrency, once, MAX_ECHOES
    )


async def icmp_rows(seconds: float, concurrency: int) -> None:
    seconds = min(seconds, MAX_ICMP_SECONDS)
    try:
        rows = [
            await shared_socket_echoes(seconds, 256),
            await shared_socket_echoes(seconds, concurrency),
            await socket_per_echo(seconds, concurrency),
            await probe_checks("icmp", "127.0.0.1", seconds, concurrency, count=1),
        ]
    except IcmpUnavailableError as exc:
        print(f"\nICMP: not measured: {exc}")
        return
    print(f"\nICMP echo to 127.0.0.1 (at most {MAX_ECHOES:,} echoes and {seconds:g} s per row)")
    header = f"{'client':<58} {'per s':>9} {'CPU ms/echo':>13} {'lost':>7}"
    print(header)
    print("-" * len(header))
    for row in rows:
        cpu = f"{row.cpu_ms:.4f}" if row.cpu_ms is not None else "-"
        print(f"{row.client:<58} {row.rate:>9.0f} {cpu:>13} {row.errors:>7}")
    print(f"target for the shared socket: >= {TARGET_ECHOES:,} echoes per second")


def print_table(title: str, rows: list[Row], wrk_rate: float) -> None:
    print(f"\n{title}")
    header = f"{'client':<58} {'per s':>9} {'of wrk':>7} {'CPU ms/check':>13} {'errors':>7}"
    print(header)
    print("-" * len(header))
    for row in rows:
        ratio = row.rate / wrk_rate if wrk_rate == wrk_rate and wrk_rate > 0 else float("nan")
        cpu = f"{row.cpu_ms:.3f}" if row.cpu_ms is not None else "-"
        print(f"{row.client:<58} {row.rate:>9.0f} {ratio:>7.2f} {cpu:>13} {row.errors:>7}")
    print(f"targets for the probe: >= {TARGET_RATIO} of wrk, <= {TARGET_CPU_MS} ms CPU per check")


async def main_async(args: argparse.Namespace) -> None:
    seconds, concurrency = args.seconds, args.concurrency
    if args.icmp_only:
        await icmp_rows(seconds, concurrency)
        print(
            f"\nloop: {type(asyncio.get_running_loop()).__module__}; cores: {_cores()}; {_load()}"
        )
        return
    with LocalNginx(workers=args.nginx_workers) as nginx:
        pause = 1.0  # lets TIME_WAIT sockets of one client drain a little before the next
        wrk = await asyncio.to_thread(run_wrk, nginx.url, seconds, concurrency)
        await asyncio.sleep(pause)
        rows = [wrk, await bare_aiohttp(nginx.url, seconds, concurrency)]
        await asyncio.sleep(pause)
        rows.append(await probe_checks("http", nginx.url, seconds, concurrency))
        await asyncio.sleep(pause)
        rows.append(await check_alone("http", nginx.url, seconds, concurrency))
        await asyncio.sleep(pause)
        rows.append(await lean_client(nginx.url, seconds, concurrency))
        print_table(f"HTTP, fresh connection per request, {concurrency} concurrent", rows, wrk.rate)

        await asyncio.sleep(pause)
        tcp = [
            await bare_tcp("127.0.0.1", nginx.port, seconds, concurrency),
        ]
        await asyncio.sleep(pause)
        tcp_target = f"127.0.0.1:{nginx.port}"
        tcp.append(await probe_checks("tcp", tcp_target, seconds, concurrency))
        await asyncio.sleep(pause)
        tcp.append(await check_alone("tcp", tcp_target, seconds, concurrency))
        print_table(
            f"TCP connect, {concurrency} concurrent (ratio to wrk's HTTP rate above)", tcp, wrk.rate
        )
    if not args.no_icmp:
        await asyncio.sleep(pause)
        await icmp_rows(seconds, concurrency)
    print(f"\nloop: {type(asyncio.get_running_loop()).__module__}; cores: {_cores()}; {_load()}")


def _load() -> str:
    """The load average at the end, to read the figures by: the machine may be shared."""
    return "load average " + " / ".join(f"{value:.2f}" for value in os.getloadavg())


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per client (max 60)")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--nginx-workers", type=int, default=1)
    parser.add_argument("--no-uvloop", action="store_true", help="the standard asyncio loop")
    parser.add_argument("--icmp-only", action="store_true", help="only the ICMP rows, no nginx")
    parser.add_argument("--no-icmp", action="store_true", help="only the HTTP and TCP rows")
    args = parser.parse_args()
    args.seconds = min(max(args.seconds, 1.0), 60.0)
    socket.setdefaulttimeout(10)
    if args.no_uvloop:
        asyncio.run(main_async(args))
    else:
        import uvloop

        uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
