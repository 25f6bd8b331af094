"""TCP check: connect to host:port, optionally send bytes and expect a reply matching a pattern.

The name is resolved here and every address is put through the egress policy before connecting
(an address as target needs no resolver). The socket is closed with a reset (SO_LINGER 0) so
thousands of checks leave no TIME_WAIT behind. The connection is a bare non-blocking socket, no
transport or streams (a StreamReader and StreamWriter per check cost more CPU than the connect
itself; uvloop's create_connection with its transport still cost as much): a connect the kernel
has finished by the time `connect` returns (loopback and LAN, usually) is seen with one
`getpeername` and never waits on the loop, and only a check that waits (for the handshake, a
reply or DNS) sets a timer for its deadline. What a monitor's settings and target imply is worked
out once, not per check (`_prepared`, `_endpoint`).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import os
import re
import socket
import time
from dataclasses import dataclass
from typing import Any

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field

from pingtower.common.egress import EgressDeniedError, check_address
from pingtower.common.events import CheckJob, Outcome
from pingtower.pinger.checks.base import Check, CheckContext, CheckResult, ms, register
from pingtower.pinger.checks.stream_sockets import nonblocking_stream, reset_on_close
from pingtower.pinger.domain.monitor import InvalidSettingError, parse_host_port


class TcpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    send: str | None = Field(None, max_length=4096, description="Text sent after connecting.")
    expect: str | None = Field(
        None, min_length=1, max_length=1000, description="Regex the reply must match."
    )
    max_reply_bytes: int = Field(4096, ge=1, le=65_536)


# Distinct settings and targets kept worked out; beyond these, the least recently used are
# worked out again on their next check.
SETTINGS_CACHED = 4096
TARGETS_CACHED = 16_384


@register
class TcpCheck(Check):
    type_name = "tcp"
    settings_model = TcpSettings

    def validate_target(self, target: str) -> str:
        parse_host_port(target)
        return target

    def check_settings(self, settings: Any) -> None:
        assert isinstance(settings, TcpSettings)
        if settings.expect is not None:
            try:
                re.compile(settings.expect)
            except re.error as exc:
                raise InvalidSettingError("settings.expect", f"bad regex: {exc}") from None

    async def run(self, job: CheckJob, context: CheckContext) -> CheckResult:
        prepared = _prepare(pydantic_core.to_json(job.settings, inf_nan_mode="constants"))
        host, port, literal = _endpoint(job.target)
        started = time.perf_counter()
        deadline = asyncio.get_running_loop().time() + job.timeout_seconds
        phases: dict[str, float] = {}
        try:
            result = await _probe(host, port, literal, prepared, context, phases, started, deadline)
        except TimeoutError:
            result = CheckResult.failed("timeout", f"no answer within {job.timeout_seconds:g} s")
        except EgressDeniedError as exc:
            result = CheckResult.failed("blocked", str(exc))
        except socket.gaierror as exc:
            result = CheckResult.failed("dns", f"cannot resolve {host}: {exc}")
        except OSError as exc:
            result = CheckResult.failed("connect", f"{host}:{port}: {exc}")
        latency_ms = result.latency_ms = ms(time.perf_counter() - started)
        phases["total"] = latency_ms
        result.phases_ms = phases
        return result


@dataclass(frozen=True, slots=True)
class _Prepared:
    settings: TcpSettings
    send: bytes | None
    pattern: re.Pattern[str] | None


@functools.lru_cache(maxsize=SETTINGS_CACHED)
def _prepare(settings_json: bytes) -> _Prepared:
    """A monitor's settings, validated and compiled; keyed on their JSON (a dict cannot be a
    key). Never changed after this."""
    settings = TcpSettings.model_validate_json(settings_json)
    return _Prepared(
        settings=settings,
        send=settings.send.encode() if settings.send is not None else None,
        pattern=re.compile(settings.expect) if settings.expect is not None else None,
    )


@functools.lru_cache(maxsize=TARGETS_CACHED)
def _endpoint(target: str) -> tuple[str, int, tuple[int, str] | None]:
    """Host, port and, when the host is an IP address, (family, address); InvalidSettingError
    for a bad target (not cached)."""
    host, port = parse_host_port(target)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host, port, None
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    return host, port, (family, str(address))


async def _resolve(host: str, port: int, deadline: float) -> list[tuple[int, str]]:
    """The host's addresses in the resolver's order, or socket.gaierror."""
    async with asyncio.timeout_at(deadline):
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys((int(info[0]), str(info[4][0])) for info in infos))
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, f"{host} has no address")
    return addresses


async def _probe(
    host: str,
    port: int,
    literal: tuple[int, str] | None,
    prepared: _Prepared,
    context: CheckContext,
    phases: dict[str, float],
    started: float,
    deadline: float,
) -> CheckResult:
    """Connects to each address in turn until one accepts, then sends and expects on it. A
    check that needs no wait (an address as target, a handshake the kernel has finished, no
    reply expected) runs through without a suspension, future or timer."""
    addresses = [literal] if literal is not None else await _resolve(host, port, deadline)
    for _family, address in addresses:
        # EgressDeniedError propagates: the check reports it as "blocked".
        check_address(
            address, allow_private=context.allow_private, allow_networks=context.allow_networks
        )
    resolved = time.perf_counter()
    phases["dns"] = ms(resolved - started)
    error: OSError | None = None
    for family, address in addresses:
        sock = nonblocking_stream(family)
        try:
            try:
                if not _connect(sock, address, port):
                    await _connected(sock, deadline)
            except OSError as exc:
                error = error or exc
                continue
            phases["connect"] = ms(time.perf_counter() - resolved)
            try:
                if prepared.send is None and prepared.pattern is None:
                    return CheckResult(Outcome.UP)
                return await _converse(sock, prepared, deadline)
            finally:
                reset_on_close(sock)  # we close first
        finally:
            sock.close()
    assert error is not None  # there is at least one address
    raise error


def _connect(sock: socket.socket, address: str, port: int) -> bool:
    """Starts connecting the non-blocking `sock`: True if the connection is already made,
    False if it is in progress; OSError if it failed at once."""
    error = sock.connect_ex((address, port))
    if error == 0:
        return True
    if error != errno.EINPROGRESS:
        raise OSError(error, os.strerror(error))
    try:
        sock.getpeername()  # succeeds once the handshake is over: often already, on a LAN
    except OSError:
        return False
    return True


async def _connected(sock: socket.socket, deadline: float) -> None:
    """Waits for the connect in progress on `sock`; OSError if it fails."""
    loop = asyncio.get_running_loop()
    writable: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()
    loop.add_writer(fd, _settle, writable)
    try:
        async with asyncio.timeout_at(deadline):
            await writable
    finally:
        loop.remove_writer(fd)
    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if error:
        raise OSError(error, os.strerror(error))


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _converse(sock: socket.socket, prepared: _Prepared, deadline: float) -> CheckResult:
    """Sends the settings' text, if any, and reads the reply until the pattern matches, the
    cap is reached or the server closes; a reset raises its OSError."""
    loop = asyncio.get_running_loop()
    if prepared.send is not None:
        try:
            sent = sock.send(prepared.send)  # a short text goes out in one call
        except (BlockingIOError, InterruptedError):
            sent = 0
        if sent < len(prepared.send) and prepared.pattern is not None:
            async with asyncio.timeout_at(deadline):
                await loop.sock_sendall(sock, prepared.send[sent:])
    pattern = prepared.pattern
    if pattern is None:
        return CheckResult(Outcome.UP)
    cap = prepared.settings.max_reply_bytes
    reply = bytearray()
    async with asyncio.timeout_at(deadline):
        while len(reply) < cap:
            data = await loop.sock_recv(sock, cap - len(reply))
            if not data:
                break
            reply += data
            if pattern.search(reply.decode(errors="replace")):
                return CheckResult(Outcome.UP, size_bytes=len(reply))
    return CheckResult.failed(
        "assertion",
        f"reply {bytes(reply[:80])!r} does not match {prepared.settings.expect!r}",
        size_bytes=len(reply),
    )
