"""TLS certificate check: a handshake with host:port that verifies the chain and the hostname,
and reports the days left before the certificate expires; fewer than `warn_days` is DEGRADED,
an expired, untrusted or mismatched certificate is DOWN."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pingtower.common.egress import EgressDeniedError, check_address
from pingtower.common.events import CheckJob, Outcome
from pingtower.pinger.checks.base import Check, CheckContext, CheckResult, ms, register
from pingtower.pinger.domain.monitor import parse_host_port


class TlsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    warn_days: int = Field(14, ge=0, le=365, description="DEGRADED below this many days left.")
    server_name: str | None = Field(
        None, max_length=253, description="Name sent (SNI) and checked; default: the host."
    )


def _host_port(target: str) -> tuple[str, int]:
    if ":" not in target.replace("::", "") and not target.startswith("["):
        return target, 443
    return parse_host_port(target)


def _expiry(tls: ssl.SSLObject | None) -> datetime | None:
    cert = tls.getpeercert() if tls is not None else None
    not_after = cert.get("notAfter") if cert else None
    if not isinstance(not_after, str):
        return None
    return datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), UTC)


@register
class TlsCheck(Check):
    type_name = "tls"
    settings_model = TlsSettings

    def validate_target(self, target: str) -> str:
        _host_port(target)
        return target

    async def run(self, job: CheckJob, context: CheckContext) -> CheckResult:
        settings = TlsSettings.model_validate(job.settings)
        host, port = _host_port(job.target)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(job.timeout_seconds):
                result = await self._handshake(host, port, settings, context)
        except TimeoutError:
            result = CheckResult.failed("timeout", f"no handshake within {job.timeout_seconds:g} s")
        except EgressDeniedError as exc:
            result = CheckResult.failed("blocked", str(exc))
        except ssl.SSLCertVerificationError as exc:
            result = CheckResult.failed("tls", f"certificate rejected: {exc.verify_message}")
        except ssl.SSLError as exc:
            result = CheckResult.failed("tls", f"handshake failed: {exc.reason or exc}")
        except socket.gaierror as exc:
            result = CheckResult.failed("dns", f"cannot resolve {host}: {exc}")
        except OSError as exc:
            result = CheckResult.failed("connect", f"{host}:{port}: {exc}")
        result.latency_ms = ms(time.perf_counter() - started)
        result.phases_ms = {"tls": result.latency_ms, "total": result.latency_ms}
        return result

    async def _handshake(
        self, host: str, port: int, settings: TlsSettings, context: CheckContext
    ) -> CheckResult:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _type, _proto, _name, address = infos[0]
        check_address(
            str(address[0]),
            allow_private=context.allow_private,
            allow_networks=context.allow_networks,
        )
        server_name = settings.server_name or host
        _reader, writer = await asyncio.open_connection(
            str(address[0]), port, family=family, ssl=context.tls, server_hostname=server_name
        )
        try:
            expires = _expiry(writer.get_extra_info("ssl_object"))
        finally:
            writer.transport.abort()
        if expires is None:
            return CheckResult.failed("tls", "the server sent no certificate")
        days_left = (expires - datetime.now(UTC)).total_seconds() / 86_400
        extra: dict[str, Any] = {"cert_expires_at": expires}
        if days_left < settings.warn_days:
            return CheckResult(
                Outcome.DEGRADED,
                error_kind="cert_expiring",
                error_message=f"the certificate expires in {days_left:.1f} days",
                **extra,
            )
        return CheckResult(Outcome.UP, **extra)
