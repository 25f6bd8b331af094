"""ICMP check: echo requests to a host (count, interval), packet loss and round-trip figures.

Works as a normal user with datagram ICMP sockets where the kernel allows them
(net.ipv4.ping_group_range), and as root (or with CAP_NET_RAW) with raw sockets; when neither is
possible the result says so. IPv4 only for now.

All packets lost is DOWN; some lost, or an average round trip above `degraded_above_ms`, is
DEGRADED.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pingtower.common.egress import EgressDeniedError, check_address
from pingtower.common.events import CheckJob, Outcome
from pingtower.pinger.checks.base import Check, CheckContext, CheckResult, register
from pingtower.pinger.domain.monitor import InvalidSettingError
from pingtower.pinger.domain.ping import echo_request, parse_echo_reply, summarise

_SEQUENCES = itertools.count(int.from_bytes(os.urandom(2), "big"))


class IcmpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = Field(3, ge=1, le=20)
    interval_ms: int = Field(200, ge=10, le=5000)
    degraded_above_ms: float | None = Field(None, gt=0)


class IcmpUnavailableError(OSError):
    pass


def open_icmp_socket() -> tuple[socket.socket, bool]:
    """An ICMP socket and whether its packets carry the IP header (raw) or not (datagram)."""
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
        raw = False
    except PermissionError:
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            raw = True
        except PermissionError:
            raise IcmpUnavailableError(
                "ICMP needs root or CAP_NET_RAW (raw sockets), or a net.ipv4.ping_group_range "
                "that includes this process's group (datagram ICMP sockets)"
            ) from None
    sock.setblocking(False)
    return sock, raw


@register
class IcmpCheck(Check):
    type_name = "icmp"
    settings_model = IcmpSettings

    def validate_target(self, target: str) -> str:
        host = target.strip()
        if not host or len(host) > 253 or any(c in host for c in "/: "):
            raise InvalidSettingError("target", "must be a host name or an IPv4 address")
        return host

    def check_settings(self, settings: Any) -> None:
        assert isinstance(settings, IcmpSettings)

    async def run(self, job: CheckJob, context: CheckContext) -> CheckResult:
        settings = IcmpSettings.model_validate(job.settings)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(job.timeout_seconds):
                result = await self._ping(job.target, settings, context)
        except TimeoutError:
            result = CheckResult.failed("timeout", f"no answer within {job.timeout_seconds:g} s")
        except EgressDeniedError as exc:
            result = CheckResult.failed("blocked", str(exc))
        except IcmpUnavailableError as exc:
            result = CheckResult.failed("config", str(exc))
        except socket.gaierror as exc:
            result = CheckResult.failed("dns", f"cannot resolve {job.target}: {exc}")
        except OSError as exc:
            result = CheckResult.failed("connect", f"{job.target}: {exc}")
        if result.latency_ms is None:
            result.latency_ms = round((time.perf_counter() - started) * 1000, 3)
        return result

    async def _ping(self, host: str, settings: IcmpSettings, context: CheckContext) -> CheckResult:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, None, family=socket.AF_INET)
        address = str(infos[0][4][0])
        check_address(address, allow_private=context.allow_private)
        sock, raw = open_icmp_socket()
        try:
            # Datagram sockets get their identifier from the kernel (the local port).
            identifier = sock.getsockname()[1] if not raw else os.getpid() & 0xFFFF
            sent_at: dict[int, float] = {}
            rtts: list[float] = []
            receiver = asyncio.create_task(
                self._receive(sock, raw, identifier, sent_at, rtts, settings.count)
            )
            try:
                for index in range(settings.count):
                    sequence = next(_SEQUENCES) & 0xFFFF
                    sent_at[sequence] = time.perf_counter()
                    packet = echo_request(identifier, sequence, b"pingtower" + bytes(23))
                    await loop.sock_sendto(sock, packet, (address, 0))
                    if index + 1 < settings.count:
                        await asyncio.sleep(settings.interval_ms / 1000)
                # Late replies still count for a second (or the interval, if longer).
                wait = max(settings.interval_ms / 1000, 1.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(receiver), wait)
            finally:
                receiver.cancel()
        finally:
            sock.close()
        summary = summarise(settings.count, rtts)
        phases: dict[str, float] = {"loss_percent": summary.loss_percent}
        if summary.rtt_avg_ms is not None:
            phases.update(
                rtt_min=summary.rtt_min_ms or 0.0,
                rtt_avg=summary.rtt_avg_ms,
                rtt_max=summary.rtt_max_ms or 0.0,
            )
        if summary.received == 0:
            return CheckResult.failed(
                "packet_loss", f"no reply to {summary.sent} echo requests", phases_ms=phases
            )
        result = CheckResult(Outcome.UP, latency_ms=summary.rtt_avg_ms, phases_ms=phases)
        if summary.received < summary.sent:
            result.outcome = Outcome.DEGRADED
            result.error_kind = "packet_loss"
            result.error_message = f"{summary.loss_percent:.0f}% packet loss"
        elif (
            settings.degraded_above_ms is not None
            and summary.rtt_avg_ms is not None
            and summary.rtt_avg_ms > settings.degraded_above_ms
        ):
            result.outcome = Outcome.DEGRADED
            result.error_kind = "slow"
            result.error_message = f"{summary.rtt_avg_ms:.1f} ms round trip"
        return result

    async def _receive(
        self,
        sock: socket.socket,
        raw: bool,
        identifier: int,
        sent_at: dict[int, float],
        rtts: list[float],
        expected: int,
    ) -> None:
        loop = asyncio.get_running_loop()
        while len(rtts) < expected:
            packet, _address = await loop.sock_recvfrom(sock, 2048)
            received = time.perf_counter()
            reply = parse_echo_reply(packet, has_ip_header=raw)
            # A raw socket sees every ICMP packet of the host: keep only our own replies.
            if reply is None or reply[0] != identifier or reply[1] not in sent_at:
                continue
            rtts.append((received - sent_at.pop(reply[1])) * 1000)
