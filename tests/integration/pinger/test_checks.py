"""HTTP and TCP checks against real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import select
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pingtower.common.events import CheckJob, Outcome, utcnow
from pingtower.pinger.checks import http_client
from pingtower.pinger.checks.base import CheckContext, CheckResult, get_check
from pingtower.pinger.checks.http_client import HttpClient, Request, _waits
from pingtower.pinger.checks.stream_sockets import reset_on_close
from tests.e2e.harness import free_port
from tests.integration.pinger.servers import HttpTarget, http_target, tcp_server


@pytest.fixture
def context() -> CheckContext:
    return CheckContext(allow_private=True)


@pytest.fixture
async def target() -> AsyncIterator[HttpTarget]:
    async with http_target() as server:
        yield server


def job(check_type: str, target: str, timeout: float = 2.0, **settings: Any) -> CheckJob:
    now = utcnow()
    _, normalised = get_check(check_type).validate(target, settings)
    return CheckJob(
        monitor_id=uuid.uuid4(),
        check_type=check_type,
        target=target,
        settings=normalised,
        timeout_seconds=timeout,
        scheduled_at=now,
        deadline=now + timedelta(seconds=60),
    )


async def check(context: CheckContext, check_type: str, target: str, **kw: Any) -> CheckResult:
    return await get_check(check_type).run(job(check_type, target, **kw), context)


async def test_http_check_is_up_on_2xx_with_timings(
    context: CheckContext, target: HttpTarget
) -> None:
    result = await check(context, "http", f"{target.url}/ok")
    assert result.outcome == Outcome.UP
    assert result.status_code == 200
    assert result.size_bytes == len("all systems operational")
    assert result.latency_ms is not None
    assert result.latency_ms > 0
    assert {"connect", "first_byte", "total"} <= set(result.phases_ms)


async def test_http_check_is_down_on_an_unexpected_status(
    context: CheckContext, target: HttpTarget
) -> None:
    result = await check(context, "http", f"{target.url}/status/503")
    assert result.outcome == Outcome.DOWN
    assert result.error_kind == "http_status"
    assert result.status_code == 503
    assert "503" in (result.error_message or "")


async def test_http_check_accepts_a_configured_status_range(
    context: CheckContext, target: HttpTarget
) -> None:
    result = await check(
        context, "http", f"{target.url}/status/404", expected_status=["400-404", "200"]
    )
    assert result.outcome == Outcome.UP


async def test_http_check_is_down_when_the_keyword_is_missing(
    context: CheckContext, target: HttpTarget
) -> None:
    result = await check(context, "http", f"{target.url}/ok", keyword="maintenance")
    assert result.outcome == Outcome.DOWN
    assert result.error_kind == "assertion"
    found = await check(context, "http", f"{target.url}/ok", keyword="operational")
    assert found.outcome == Outcome.UP


async def test_http_check_can_require_a_keyword_to_be_absent(
    context: CheckContext, target: HttpTarget
) -> None:
    result = await check(
        context,
        "http",
        f"{target.url}/ok",
        keyword=r"system\w",
        keyword_is_regex=True,
        keyword_mode="absent",
    )
    assert result.outcome == Outcome.DOWN
    assert result.error_kind == "assertion"


async def test_http_check_times_out(context: CheckContext, target: HttpTarget) -> None:
    result = await check(context, "http", f"{target.url}/slow?seconds=3", timeout=0.3)
    assert result.outcome == Outcome.DOWN
    assert result.error_kind == "timeout"
    assert result.latency_ms is not None
    assert result.latency_ms < 2000


async def test_http_check_reports_a_refused_connection(context: CheckContext) -> None:
    result = await check(context, "http", f"http://127.0.0.1:{free_port()}/")
    assert result.outcome == Outcome.DOWN
    assert result.error_kind == "connect"


async def test_http_check_follows_redirects_up_to_the_limit(
    context: CheckContext, target: HttpTarget
) -> None:
    assert (await check(context, "http", f"{target.url}/redirect/3")).outcome == Outcome.UP
    too_many = await check(context, "http", f"{target.url}/redirect/3", max_redirects=2)
    assert too_many.error_kind == "redirect"
    not_followed = await check(context, "http", f"{target.url}/redirect/1", follow_redirects=False)
    assert not_followed.error_kind == "http_status"
    assert not_followed.status_code == 302


async def test_http_check_caps_the_response_size(context: CheckContext, target: HttpTarget) -> None:
    result = await check(context, "http", f"{target.url}/big", max_size_bytes=1000)
    assert result.outcome == Outcome.DOWN
    assert result.error_kind == "size"
    fits = await check(context, "http", f"{target.url}/big")
    assert fits.outcome == Outcome.UP
    assert fits.size_bytes == 200_000


async def test_http_check_is_degraded_above_the_latency_threshold(
    context: CheckContext, target: HttpTarget
) -> None:
    result = await check(context, "http", f"{target.url}/slow?seconds=0.2", degraded_above_ms=50)
    assert result.outcome == Outcome.DEGRADED
    assert result.error_kind == "slow"


async def test_http_check_sends_method_body_and_bearer_token(
    context: CheckContext, target: HttpTarget
) -> None:
    authed = await check(context, "http", f"{target.url}/auth", bearer_token="s3cret")
    assert authed.outcome == Outcome.UP
    assert (await check(context, "http", f"{target.url}/auth")).status_code == 401
    echoed = await check(
        context, "http", f"{target.url}/echo", method="POST", body="ping", keyword="POST ping"
    )
    assert echoed.outcome == Outcome.UP


async def test_http_check_applies_json_assertions(
    context: CheckContext, target: HttpTarget
) -> None:
    url = f"{target.url}/health"
    good = await check(
        context,
        "http",
        url,
        json_assertions=[
            {"path": "status", "op": "eq", "value": "pass"},
            {"path": "checks.0.ms", "op": "lt", "value": 100},
        ],
    )
    bad = await check(
        context, "http", url, json_assertions=[{"path": "checks.0.ms", "op": "lt", "value": 5}]
    )
    not_json = await check(
        context, "http", f"{target.url}/ok", json_assertions=[{"path": "a", "op": "exists"}]
    )
    assert good.outcome == Outcome.UP
    assert bad.error_kind == "assertion"
    assert "checks.0.ms is 12" in (bad.error_message or "")
    assert not_json.error_message == "the body is not JSON"


async def test_http_check_sends_basic_auth(context: CheckContext, target: HttpTarget) -> None:
    url = f"{target.url}/basic"
    authed = await check(
        context, "http", url, basic_auth={"username": "monitor", "password": "pa55"}
    )
    assert authed.outcome == Outcome.UP
    assert (await check(context, "http", url)).status_code == 401


async def test_http_check_refuses_loopback_when_private_targets_are_not_allowed(
    target: HttpTarget,
) -> None:
    result = await get_check("http").run(
        job("http", f"{target.url}/ok"), CheckContext(allow_private=False)
    )
    assert result.outcome == Outcome.DOWN
    assert result.error_kind == "blocked"


async def test_tcp_check_is_up_when_the_port_accepts(context: CheckContext) -> None:
    async with tcp_server() as port:
        result = await check(context, "tcp", f"127.0.0.1:{port}")
    assert result.outcome == Outcome.UP
    assert "connect" in result.phases_ms


async def test_tcp_check_sends_and_expects_a_reply(context: CheckContext) -> None:
    async with tcp_server() as port:
        good = await check(context, "tcp", f"127.0.0.1:{port}", send="ping\n", expect="^PING")
        bad = await check(context, "tcp", f"127.0.0.1:{port}", send="ping\n", expect="PONG")
    assert good.outcome == Outcome.UP
    assert bad.outcome == Outcome.DOWN
    assert bad.error_kind == "assertion"


async def test_tcp_check_reads_a_greeting(context: CheckContext) -> None:
    async with tcp_server(greeting=b"SSH-2.0-OpenSSH_9.6\r\n") as port:
        result = await check(context, "tcp", f"127.0.0.1:{port}", expect=r"^SSH-2\.0")
    assert result.outcome == Outcome.UP


async def test_tcp_check_reports_a_refused_connection(context: CheckContext) -> None:
    result = await check(context, "tcp", f"127.0.0.1:{free_port()}")
    assert result.outcome == Outcome.DOWN
    assert result.error_kind == "connect"


async def test_tcp_check_refuses_loopback_when_private_targets_are_not_allowed(
    context: CheckContext,
) -> None:
    async with tcp_server() as port:
        result = await get_check("tcp").run(
            job("tcp", f"127.0.0.1:{port}"), CheckContext(allow_private=False)
        )
    assert result.outcome == Outcome.DOWN
    assert result.error_kind == "blocked"


async def test_tcp_check_resolves_a_name_and_tries_each_address(context: CheckContext) -> None:
    # The server listens on 127.0.0.1 only; "localhost" may resolve to ::1 first.
    async with tcp_server() as port:
        result = await check(context, "tcp", f"localhost:{port}")
    assert result.outcome == Outcome.UP, result.error_message
    assert {"dns", "connect", "total"} <= set(result.phases_ms)


async def test_tcp_check_stops_reading_at_the_reply_cap(context: CheckContext) -> None:
    # The server sends its greeting and keeps the connection open: the cap ends the read.
    async with tcp_server(greeting=b"x" * 100) as port:
        result = await check(
            context, "tcp", f"127.0.0.1:{port}", timeout=5, expect="y", max_reply_bytes=10
        )
    assert result.outcome == Outcome.DOWN
    assert result.error_kind == "assertion"
    assert result.size_bytes == 10


def sockets_towards(server_port: int, client_ports: set[int]) -> list[str]:
    """The TCP states (hex, as in /proc/net/tcp; 06 is TIME_WAIT) of this host's sockets from
    one of `client_ports` to `server_port`."""
    states = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, remote, state = line.split()[1:4]
            if (
                int(remote.rsplit(":", 1)[1], 16) == server_port
                and int(local.rsplit(":", 1)[1], 16) in client_ports
            ):
                states.append(state)
    return states


@asynccontextmanager
async def lingering_server(reply: bytes) -> AsyncIterator[tuple[int, set[int]]]:
    """A server on 127.0.0.1 that sends `reply` on each connection and keeps it open until the
    client closes it, so the client closes first; yields its port and its clients' ports."""
    clients: set[int] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        clients.add(writer.get_extra_info("peername")[1])
        writer.write(reply)
        try:
            await reader.read()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], clients
    finally:
        server.close()
        await server.wait_closed()


async def assert_no_sockets_left(port: int, clients: set[int], checks: int) -> None:
    """Closed normally, the prober's side of each connection would sit in TIME_WAIT (06) for a
    minute; reset, it is gone as soon as the event loop has closed it."""
    deadline = time.monotonic() + 5
    while len(clients) < checks or sockets_towards(port, clients):
        if time.monotonic() > deadline:
            left = sockets_towards(port, clients)
            raise AssertionError(f"{len(clients)} clients seen, sockets left in states {left}")
        await asyncio.sleep(0.05)


async def test_tcp_check_leaves_no_time_wait_socket_behind(context: CheckContext) -> None:
    async with lingering_server(b"") as (port, clients):
        for _ in range(3):
            result = await check(context, "tcp", f"127.0.0.1:{port}")
            assert result.outcome == Outcome.UP
        await assert_no_sockets_left(port, clients, 3)


async def test_http_check_leaves_no_time_wait_socket_when_the_server_keeps_the_connection(
    context: CheckContext,
) -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    async with lingering_server(reply) as (port, clients):
        for _ in range(3):
            result = await check(context, "http", f"http://127.0.0.1:{port}/", keyword="ok")
            assert result.outcome == Outcome.UP, result.error_message
        await assert_no_sockets_left(port, clients, 3)


@asynccontextmanager
async def closing_server(reply: bytes) -> AsyncIterator[tuple[int, set[int]]]:
    """A server on 127.0.0.1 that sends `reply` and its FIN (shutdown) in one step as soon as a
    connection comes in, before it reads the request: the client finds both when it first
    hears of the connection. Yields its port and its clients' ports."""
    clients: set[int] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        clients.add(writer.get_extra_info("peername")[1])
        writer.write(reply)  # sent at once: nothing is buffered yet
        writer.get_extra_info("socket").shutdown(socket.SHUT_WR)
        try:
            await reader.read()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], clients
    finally:
        server.close()
        await server.wait_closed()


async def test_a_connection_the_server_closed_first_is_closed_without_a_reset(
    context: CheckContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    resets: list[int] = []

    def counted_reset(sock: socket.SocketType) -> None:
        resets.append(sock.fileno())
        reset_on_close(sock)

    monkeypatch.setattr(http_client, "reset_on_close", counted_reset)
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    async with closing_server(reply) as (port, clients):
        for _ in range(3):
            result = await check(context, "http", f"http://127.0.0.1:{port}/", keyword="ok")
            assert result.outcome == Outcome.UP, result.error_message
        await assert_no_sockets_left(port, clients, 3)
    assert resets == []  # the FIN came with the response: a plain close leaves nothing behind
    async with lingering_server(reply) as (port, clients):
        result = await check(context, "http", f"http://127.0.0.1:{port}/", keyword="ok")
        assert result.outcome == Outcome.UP, result.error_message
        await assert_no_sockets_left(port, clients, 1)
    assert len(resets) == 1  # no FIN: closed with a reset, as we close first


@asynccontextmanager
async def full_accept_queue(reply: bytes) -> AsyncIterator[tuple[int, asyncio.Event]]:
    """A listener on 127.0.0.1 whose accept queue (backlog 0) holds one unaccepted connection,
    so the kernel drops the next SYN and a client's connect stays in progress. Setting the
    yielded event accepts the queued connection; from then on every connection is accepted,
    sent `reply` and kept open until its client closes it."""
    loop = asyncio.get_running_loop()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    listener.setblocking(False)
    filler = socket.create_connection(listener.getsockname(), timeout=2)
    release = asyncio.Event()
    connections: list[socket.socket] = []

    async def serve() -> None:
        await release.wait()
        while True:
            connection, _ = await loop.sock_accept(listener)
            connections.append(connection)
            if reply:
                await loop.sock_sendall(connection, reply)

    server = asyncio.create_task(serve())
    try:
        yield listener.getsockname()[1], release
    finally:
        server.cancel()
        for sock in (listener, filler, *connections):
            sock.close()


async def syn_sent_towards(port: int) -> None:
    """Returns once a socket of this host is connecting (SYN_SENT, 02) to `port`."""
    deadline = time.monotonic() + 5
    while "02" not in sockets_towards_port(port):
        assert time.monotonic() < deadline, "no connect in progress"
        await asyncio.sleep(0.01)


def sockets_towards_port(port: int) -> list[str]:
    states = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        remote, state = line.split()[2:4]
        if int(remote.rsplit(":", 1)[1], 16) == port:
            states.append(state)
    return states


@pytest.mark.parametrize(
    ("check_type", "reply"),
    [("tcp", b""), ("http", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")],
)
async def test_a_connect_still_in_progress_is_awaited_until_the_timeout(
    context: CheckContext, check_type: str, reply: bytes
) -> None:
    async with full_accept_queue(reply) as (port, _release):
        target = f"127.0.0.1:{port}" if check_type == "tcp" else f"http://127.0.0.1:{port}/"
        result = await check(context, check_type, target, timeout=0.3)
    assert result.outcome == Outcome.DOWN
    assert result.error_kind == "timeout"
    assert result.latency_ms is not None
    assert result.latency_ms < 2000


@pytest.mark.parametrize(
    ("check_type", "reply"),
    [("tcp", b""), ("http", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")],
)
async def test_a_connect_that_completes_later_is_timed_from_its_start(
    context: CheckContext, check_type: str, reply: bytes
) -> None:
    # The dropped SYN is sent again after about a second, once the queue has room.
    async with full_accept_queue(reply) as (port, release):
        target = f"127.0.0.1:{port}" if check_type == "tcp" else f"http://127.0.0.1:{port}/"
        running = asyncio.create_task(check(context, check_type, target, timeout=10))
        await syn_sent_towards(port)
        assert not running.done()
        release.set()
        result = await running
    assert result.outcome == Outcome.UP, result.error_message
    assert result.phases_ms["connect"] > 200


def large_post(url: str, body: bytes) -> Request:
    return Request(
        method="POST",
        url=url,
        headers={},
        body=body,
        max_body=1024,
        verify_tls=True,
        follow_redirects=False,
        max_redirects=0,
    )


# Larger than a loopback socket's send buffer (4 MiB here) and its peer's receive buffer, so
# the client sends the rest as the server reads.
LARGE_BODY = bytes(range(256)) * (64 * 1024)  # 16 MiB


async def test_a_request_larger_than_the_socket_takes_at_once_is_sent_whole() -> None:
    async def digest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        answer = hashlib.sha256(await reader.readexactly(length)).hexdigest().encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n" + answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(digest, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = HttpClient(allow_private=True)
        deadline = asyncio.get_running_loop().time() + 30
        response = await client.request(
            large_post(f"http://127.0.0.1:{port}/", LARGE_BODY), deadline
        )
    finally:
        server.close()
        await server.wait_closed()
    assert response.status == 200
    assert response.body == hashlib.sha256(LARGE_BODY).hexdigest().encode()


async def test_concurrent_http_checks_each_get_their_own_answer_or_timeout(
    context: CheckContext, target: HttpTarget
) -> None:
    fast = [check(context, "http", f"{target.url}/ok", timeout=5) for _ in range(20)]
    slow = [check(context, "http", f"{target.url}/slow?seconds=5", timeout=0.3) for _ in range(5)]
    results = await asyncio.gather(*fast, *slow)
    assert [r.outcome for r in results[:20]] == [Outcome.UP] * 20
    assert [r.error_kind for r in results[20:]] == ["timeout"] * 5
    assert all(r.latency_ms is not None and 300 <= r.latency_ms < 2000 for r in results[20:])


async def test_without_epoll_the_loops_own_callbacks_serve_the_http_check(
    context: CheckContext, target: HttpTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on a platform without epoll: this test's event loop gets its waits without it.
    monkeypatch.delattr(select, "epoll")
    assert _waits(asyncio.get_running_loop()).epoll is None
    fast = [check(context, "http", f"{target.url}/ok", timeout=5) for _ in range(10)]
    slow = [check(context, "http", f"{target.url}/slow?seconds=5", timeout=0.3) for _ in range(3)]
    results = await asyncio.gather(*fast, *slow)
    assert [r.outcome for r in results[:10]] == [Outcome.UP] * 10
    assert [r.error_kind for r in results[10:]] == ["timeout"] * 3
    async with full_accept_queue(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") as (port, go):
        running = asyncio.create_task(
            check(context, "http", f"http://127.0.0.1:{port}/", timeout=10)
        )
        await syn_sent_towards(port)
        go.set()
        assert (await running).outcome == Outcome.UP
