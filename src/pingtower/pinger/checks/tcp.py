"""TCP check: connect to host:port, optionally send bytes and expect a reply matching a pattern.

The name is resolved here and every address is put through the egress policy before connecting
(an address as target needs no resolver). The socket is closed with a reset (SO_LINGER 0) so
thousands of checks leave no TIME_WAIT behind. The connection is a bare asyncio protocol, not
streams: a StreamReader and StreamWriter per check cost more CPU than the connect itself. What a
monitor's settings and target imply is worked out once, not per check (`_prepared`, `_endpoint`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import re
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field

from pingtower.common.egress import EgressDeniedError, check_address
from pingtower.common.events import CheckJob, Outcome
from pingtower.pinger.checks.base import Check, CheckContext, CheckResult, register
from pingtower.pinger.domain.monitor import InvalidSettingError, parse_host_port


class TcpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    send: str | None = Field(None, max_length=4096, description="Text sent after connecting.")
    expect: str | None = Field(
        None, min_length=1, max_length=1000, description="Regex the reply must match."
    )
    max_reply_bytes: int = Field(4096, ge=1, le=65_536)


_LINGER_RESET = struct.pack("ii", 1, 0)
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
        phases: dict[str, float] = {}
        try:
            async with asyncio.timeout(job.timeout_seconds):
                result = await _probe(host, port, literal, prepared, context, phases, started)
        except TimeoutError:
            result = CheckResult.failed("timeout", f"no answer within {job.timeout_seconds:g} s")
        except EgressDeniedError as exc:
            result = CheckResult.failed("blocked", str(exc))
        except socket.gaierror as exc:
            result = CheckResult.failed("dns", f"cannot resolve {host}: {exc}")
        except OSError as exc:
            result = CheckResult.failed("connect", f"{host}:{port}: {exc}")
        latency_ms = result.latency_ms = round((time.perf_counter() - started) * 1000, 3)
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


async def _addresses(
    host: str, port: int, literal: tuple[int, str] | None, context: CheckContext
) -> list[tuple[int, str]]:
    """The addresses to try in order, each allowed by the egress policy (EgressDeniedError
    otherwise), or socket.gaierror."""
    if literal is not None:
        addresses = [literal]
    else:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys((int(info[0]), str(info[4][0])) for info in infos))
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} has no address")
    for _family, address in addresses:
        check_address(
            address, allow_private=context.allow_private, allow_networks=context.allow_networks
        )
    return addresses


async def _probe(
    host: str,
    port: int,
    literal: tuple[int, str] | None,
    prepared: _Prepared,
    context: CheckContext,
    phases: dict[str, float],
    started: float,
) -> CheckResult:
    addresses = await _addresses(host, port, literal, context)
    resolved = time.perf_counter()
    phases["dns"] = round((resolved - started) * 1000, 3)
    loop = asyncio.get_running_loop()
    settings = prepared.settings
    protocol = _ReplyProtocol(loop, prepared.pattern, settings.max_reply_bytes)
    error: OSError | None = None
    for _family, address in addresses:
        try:
            await loop.create_connection(lambda: protocol, address, port)
            break
        except OSError as exc:
            error = error or exc
    else:
        assert error is not None  # there is at least one address
        raise error
    transport = protocol.transport
    assert transport is not None
    try:
        phases["connect"] = round((time.perf_counter() - resolved) * 1000, 3)
        if prepared.send is not None:
            transport.write(prepared.send)
        if prepared.pattern is None:
            return CheckResult(Outcome.UP)
        if await protocol.done:
            return CheckResult(Outcome.UP, size_bytes=len(protocol.reply))
        reply = bytes(protocol.reply)
        return CheckResult.failed(
            "assertion",
            f"reply {reply[:80]!r} does not match {settings.expect!r}",
            size_bytes=len(reply),
        )
    finally:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        transport.abort()


class _ReplyProtocol(asyncio.Protocol):
    """Collects the reply until the pattern matches (done: True), or the cap or the end of the
    connection comes first (done: False); a connection reset fails `done` with its OSError."""

    __slots__ = ("done", "max_bytes", "pattern", "reply", "transport")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, pattern: re.Pattern[str] | None, max_bytes: int
    ) -> None:
        self.done: asyncio.Future[bool] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.pattern = pattern
        self.max_bytes = max_bytes
        self.reply = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.done.done() or self.pattern is None:
            return
        self.reply += data[: self.max_bytes - len(self.reply)]
        if self.pattern.search(self.reply.decode(errors="replace")):
            self.done.set_result(True)
        elif len(self.reply) >= self.max_bytes:
            self.done.set_result(False)

    def eof_received(self) -> None:
        self._end(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc)

    def _end(self, exc: Exception | None) -> None:
        if self.done.done() or self.pattern is None:
            return  # without a pattern nobody awaits `done`: an exception would go unretrieved
        if isinstance(exc, OSError):
            self.done.set_exception(exc)
        else:
            self.done.set_result(False)
