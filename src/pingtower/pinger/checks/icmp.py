"""ICMP check: echo requests to a host (count, interval), packet loss and round-trip figures.

Every ping of the probe process goes through one shared socket per address family
(`icmp_socket`): a datagram ICMP socket where the kernel allows it (net.ipv4.ping_group_range),
else a raw socket (root or CAP_NET_RAW); when neither is possible the result says so. IPv4 and
IPv6.

All packets lost is DOWN; some lost, or an average round trip above `degraded_above_ms`, is
DEGRADED.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pingtower.common.egress import EgressDeniedError, check_address
from pingtower.common.events import CheckJob, Outcome
from pingtower.pinger.checks.base import Check, CheckContext, CheckResult, ms, register
from pingtower.pinger.checks.icmp_socket import (
    IcmpUnavailableError,
    open_icmp_socket,
    shared_echo_socket,
)
from pingtower.pinger.domain.monitor import InvalidSettingError
from pingtower.pinger.domain.ping import summarise

__all__ = ["IcmpCheck", "IcmpSettings", "IcmpUnavailableError", "open_icmp_socket"]


class IcmpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = Field(3, ge=1, le=20)
    interval_ms: int = Field(200, ge=10, le=5000)
    degraded_above_ms: float | None = Field(None, gt=0)


@register
class IcmpCheck(Check):
    type_name = "icmp"
    settings_model = IcmpSettings

    def validate_target(self, target: str) -> str:
        host = target.strip().removeprefix("[").removesuffix("]")
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            pass
        if not host or len(host) > 253 or any(c in host for c in "/: %"):
            raise InvalidSettingError("target", "must be a host name, an IPv4 or an IPv6 address")
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
            result.latency_ms = ms(time.perf_counter() - started)
        return result

    async def _ping(self, host: str, settings: IcmpSettings, context: CheckContext) -> CheckResult:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_RAW)
        # A name with both kinds of address is pinged over IPv4, as before IPv6 was supported.
        infos.sort(key=lambda info: info[0] != socket.AF_INET)
        family, address = infos[0][0], str(infos[0][4][0])
        check_address(
            address, allow_private=context.allow_private, allow_networks=context.allow_networks
        )
        echo_socket = shared_echo_socket(family)
        # A reply may come late: it still counts for a second (or the interval, if longer).
        wait = max(settings.interval_ms / 1000, 1.0)
        echoes: list[asyncio.Future[float | None]] = []
        try:
            for index in range(settings.count):
                echoes.append(asyncio.ensure_future(echo_socket.echo(address, wait)))
                if index + 1 < settings.count:
                    await asyncio.sleep(settings.interval_ms / 1000)
            round_trips = await asyncio.gather(*echoes)
        finally:
            for echo in echoes:
                echo.cancel()
        rtts = [rtt for rtt in round_trips if rtt is not None]
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
