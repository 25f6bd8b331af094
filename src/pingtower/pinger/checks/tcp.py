"""TCP check: connect to host:port, optionally send bytes and expect a reply matching a pattern.

The name is resolved here and every address is put through the egress policy before connecting.
The socket is closed with a reset (SO_LINGER 0) so thousands of checks leave no TIME_WAIT behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
import time
from typing import Any

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
        settings = TcpSettings.model_validate(job.settings)
        host, port = parse_host_port(job.target)
        started = time.perf_counter()
        phases: dict[str, float] = {}
        try:
            async with asyncio.timeout(job.timeout_seconds):
                result = await self._probe(host, port, settings, context, phases, started)
        except TimeoutError:
            result = CheckResult.failed("timeout", f"no answer within {job.timeout_seconds:g} s")
        except EgressDeniedError as exc:
            result = CheckResult.failed("blocked", str(exc))
        except socket.gaierror as exc:
            result = CheckResult.failed("dns", f"cannot resolve {host}: {exc}")
        except OSError as exc:
            result = CheckResult.failed("connect", f"{host}:{port}: {exc}")
        result.latency_ms = round((time.perf_counter() - started) * 1000, 3)
        result.phases_ms = {**phases, "total": result.latency_ms}
        return result

    async def _probe(
        self,
        host: str,
        port: int,
        settings: TcpSettings,
        context: CheckContext,
        phases: dict[str, float],
        started: float,
    ) -> CheckResult:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        resolved = time.perf_counter()
        phases["dns"] = round((resolved - started) * 1000, 3)
        if not infos:
            return CheckResult.failed("dns", f"{host} has no address")
        family, _type, _proto, _name, address = infos[0]
        check_address(
            str(address[0]),
            allow_private=context.allow_private,
            allow_networks=context.allow_networks,
        )
        reader, writer = await asyncio.open_connection(str(address[0]), port, family=family)
        try:
            phases["connect"] = round((time.perf_counter() - resolved) * 1000, 3)
            if settings.send is not None:
                writer.write(settings.send.encode())
                await writer.drain()
            if settings.expect is None:
                return CheckResult(Outcome.UP)
            reply = b""
            pattern = re.compile(settings.expect)
            while len(reply) < settings.max_reply_bytes:
                chunk = await reader.read(settings.max_reply_bytes - len(reply))
                if not chunk:
                    break
                reply += chunk
                if pattern.search(reply.decode(errors="replace")):
                    return CheckResult(Outcome.UP, size_bytes=len(reply))
            return CheckResult.failed(
                "assertion",
                f"reply {reply[:80]!r} does not match {settings.expect!r}",
                size_bytes=len(reply),
            )
        finally:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            writer.transport.abort()
