"""The shared ICMP socket against the loopback interface: IPv4 and IPv6, many echoes through one
socket, bounded in-flight, per-echo timeouts, the datagram (unprivileged) path and the clear
error when no ICMP socket may be opened.

The paths that need another kernel setting (replies switched off, datagram ICMP sockets allowed)
run in a subprocess inside a fresh network namespace, whose settings are its own: the host's are
never touched.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from pingtower.common.events import CheckJob, Outcome, utcnow
from pingtower.pinger.checks.base import CheckContext, get_check, load_builtin_checks
from pingtower.pinger.checks.icmp_socket import (
    EchoSocket,
    close_shared_echo_sockets,
    shared_echo_socket,
)

# Unprivileged for ICMP is without CAP_NET_RAW: dropped from the bounding set, so that the
# Python it starts never has it. The process stays root for files, as the checkout may be
# readable by root only (a clone below a 0700 temporary folder).
WITHOUT_NET_RAW = ["setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw"]


def as_root() -> bool:
    return os.geteuid() == 0


needs_root = pytest.mark.skipif(
    not as_root(), reason="raw ICMP sockets and network namespaces need root"
)


@pytest.fixture
async def context() -> AsyncIterator[CheckContext]:
    load_builtin_checks()
    yield CheckContext(allow_private=True)
    close_shared_echo_sockets()


def icmp_job(target: str, **settings: object) -> CheckJob:
    now = utcnow()
    return CheckJob(
        monitor_id=uuid.uuid4(),
        check_type="icmp",
        target=target,
        settings=settings,
        timeout_seconds=5,
        scheduled_at=now,
        deadline=now + timedelta(seconds=60),
    )


@needs_root
@pytest.mark.parametrize("target", ["127.0.0.1", "::1", "localhost"])
async def test_pinging_loopback_over_ipv4_and_ipv6_reports_round_trips(
    context: CheckContext, target: str
) -> None:
    result = await get_check("icmp").run(icmp_job(target, count=3, interval_ms=10), context)
    assert result.outcome == Outcome.UP, result.error_message
    assert result.phases_ms["loss_percent"] == 0.0
    assert 0 < result.phases_ms["rtt_min"] <= result.phases_ms["rtt_max"] < 1000


@needs_root
async def test_checks_share_one_socket_per_address_family(context: CheckContext) -> None:
    check = get_check("icmp")
    results = await asyncio.gather(
        *(check.run(icmp_job(t, count=2, interval_ms=10), context) for t in ["127.0.0.1"] * 20),
        *(check.run(icmp_job(t, count=2, interval_ms=10), context) for t in ["::1"] * 20),
    )
    assert all(r.outcome == Outcome.UP for r in results), [r.error_message for r in results]
    assert shared_echo_socket(socket.AF_INET) is shared_echo_socket(socket.AF_INET)
    assert shared_echo_socket(socket.AF_INET) is not shared_echo_socket(socket.AF_INET6)
    assert shared_echo_socket(socket.AF_INET).in_flight == 0


@needs_root
async def test_echoes_in_flight_are_bounded_and_every_one_is_answered() -> None:
    echo_socket = EchoSocket(socket.AF_INET, max_in_flight=16)
    try:
        echoes = [asyncio.ensure_future(echo_socket.echo("127.0.0.1", 5.0)) for _ in range(2000)]
        peak = 0
        while not all(e.done() for e in echoes):
            peak = max(peak, echo_socket.in_flight)
            await asyncio.sleep(0)
        round_trips = [e.result() for e in echoes]
    finally:
        echo_socket.close()
    assert 0 < peak <= 16
    assert all(rtt is not None and rtt >= 0 for rtt in round_trips)
    assert echo_socket.in_flight == 0


def run_in_namespace(sysctls: list[str], script: str, *, unprivileged: bool) -> dict[str, Any]:
    """Runs `script` (Python; prints one JSON line) in a fresh network namespace with its
    loopback up and the given sysctls set, optionally without CAP_NET_RAW."""
    if shutil.which("unshare") is None or shutil.which("setpriv") is None:
        pytest.skip("needs util-linux's unshare and setpriv")
    setup = " && ".join(["ip link set lo up", *(f"sysctl -qw '{s}'" for s in sysctls)])
    python = [*WITHOUT_NET_RAW, sys.executable] if unprivileged else [sys.executable]
    command = " ".join([*python, "-c", _quote(textwrap.dedent(script))])
    completed = subprocess.run(
        ["unshare", "-n", "sh", "-c", f"{setup} && exec {command}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


ECHO_BOTH_FAMILIES = """
    import asyncio, json, socket
    from pingtower.pinger.checks.icmp_socket import EchoSocket

    async def main():
        out = {}
        for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            echo_socket = EchoSocket(family)
            echoes = [echo_socket.echo(address, REPLY_WITHIN) for _ in range(50)]
            rtts = await asyncio.gather(*echoes)
            out[address] = {"raw": echo_socket.raw, "answered": sum(r is not None for r in rtts)}
            echo_socket.close()
        print(json.dumps(out))

    asyncio.run(main())
"""


@needs_root
def test_an_unprivileged_process_pings_with_datagram_sockets_where_the_kernel_allows() -> None:
    # The kernel rewrites a datagram socket's identifier to its port: replies must still match.
    out = run_in_namespace(
        ["net.ipv4.ping_group_range=0 2147483647"],
        ECHO_BOTH_FAMILIES.replace("REPLY_WITHIN", "5.0"),
        unprivileged=True,
    )
    assert out == {
        "127.0.0.1": {"raw": False, "answered": 50},
        "::1": {"raw": False, "answered": 50},
    }


@needs_root
def test_echoes_without_reply_time_out_one_by_one() -> None:
    out = run_in_namespace(
        ["net.ipv4.icmp_echo_ignore_all=1", "net.ipv6.icmp.echo_ignore_all=1"],
        ECHO_BOTH_FAMILIES.replace("REPLY_WITHIN", "0.2"),
        unprivileged=False,
    )
    assert out == {
        "127.0.0.1": {"raw": True, "answered": 0},
        "::1": {"raw": True, "answered": 0},
    }


@needs_root
def test_without_any_icmp_socket_the_check_says_why() -> None:
    # The host's own ping_group_range is left as it is; in a fresh namespace it is "1 0", none.
    out = run_in_namespace(
        ["net.ipv4.ping_group_range=1 0"],
        """
        import asyncio, json, uuid
        from datetime import timedelta
        from pingtower.common.events import CheckJob, utcnow
        from pingtower.pinger.checks.base import CheckContext, get_check, load_builtin_checks

        async def main():
            load_builtin_checks()
            now = utcnow()
            job = CheckJob(monitor_id=uuid.uuid4(), check_type="icmp", target="127.0.0.1",
                           settings={}, timeout_seconds=5, scheduled_at=now,
                           deadline=now + timedelta(seconds=60))
            result = await get_check("icmp").run(job, CheckContext(allow_private=True))
            print(json.dumps({"outcome": result.outcome.value, "kind": result.error_kind,
                              "message": result.error_message}))

        asyncio.run(main())
        """,
        unprivileged=True,
    )
    assert out["outcome"] == "down"
    assert out["kind"] == "config"
    assert "ping_group_range" in out["message"]
    assert "CAP_NET_RAW" in out["message"]
