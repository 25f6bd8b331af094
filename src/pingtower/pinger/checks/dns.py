"""DNS check: resolve one record type for a name, through the system's or a chosen resolver,
optionally expecting given values among the answers."""

from __future__ import annotations

import ipaddress
import time
from typing import Any, Literal

import dns.asyncresolver
import dns.exception
import dns.resolver
from pydantic import BaseModel, ConfigDict, Field

from pingtower.common.egress import EgressDeniedError, check_address
from pingtower.common.events import CheckJob, Outcome
from pingtower.pinger.checks.base import Check, CheckContext, CheckResult, ms, register
from pingtower.pinger.domain.monitor import InvalidSettingError, parse_host_port

RecordType = Literal["A", "AAAA", "CNAME", "MX", "NS", "TXT", "SRV", "CAA", "PTR", "SOA"]


class DnsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    record_type: RecordType = "A"
    resolver: str | None = Field(
        None, description="ip or ip:port of the resolver to ask; default: the system's."
    )
    expected: list[str] = Field(
        [], max_length=50, description="Values that must all be among the answers."
    )


def normalise(value: str) -> str:
    """Names without the trailing dot, lower case; TXT without its quotes."""
    return value.strip().strip('"').rstrip(".").lower()


def _resolver_address(resolver: str) -> tuple[str, int]:
    if resolver.count(":") == 1 or resolver.startswith("["):
        host, port = parse_host_port(resolver, "settings.resolver")
        return host, port
    return resolver, 53


@register
class DnsCheck(Check):
    type_name = "dns"
    settings_model = DnsSettings

    def validate_target(self, target: str) -> str:
        name = target.strip().rstrip(".")
        labels = name.split(".")
        if not name or len(name) > 253 or any(not 0 < len(label) <= 63 for label in labels):
            raise InvalidSettingError("target", "must be a domain name")
        return name

    def check_settings(self, settings: Any) -> None:
        assert isinstance(settings, DnsSettings)
        if settings.resolver is not None:
            host, _port = _resolver_address(settings.resolver)
            # Only the form here; whether the policy lets us reach it is decided when the
            # monitor is saved (with the reason) and again when the check runs.
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise InvalidSettingError(
                    "settings.resolver", "must be an IP address, optionally with :port"
                ) from None

    async def run(self, job: CheckJob, context: CheckContext) -> CheckResult:
        settings = DnsSettings.model_validate(job.settings)
        started = time.perf_counter()
        result = await self._resolve(job, settings, context)
        result.latency_ms = ms(time.perf_counter() - started)
        result.phases_ms = {"dns": result.latency_ms, "total": result.latency_ms}
        return result

    async def _resolve(
        self, job: CheckJob, settings: DnsSettings, context: CheckContext
    ) -> CheckResult:
        if settings.resolver is not None:
            host, port = _resolver_address(settings.resolver)
            try:
                check_address(
                    host,
                    allow_private=context.allow_private,
                    allow_networks=context.allow_networks,
                )
            except EgressDeniedError as exc:
                return CheckResult.failed("blocked", str(exc))
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [host]
            resolver.port = port
        else:
            resolver = dns.asyncresolver.Resolver()
        try:
            answer = await resolver.resolve(
                job.target, settings.record_type, lifetime=job.timeout_seconds
            )
        except dns.resolver.NXDOMAIN:
            return CheckResult.failed("dns", f"{job.target} does not exist (NXDOMAIN)")
        except dns.resolver.NoAnswer:
            return CheckResult.failed("dns", f"{job.target} has no {settings.record_type} record")
        except dns.exception.Timeout:
            return CheckResult.failed("timeout", f"no answer within {job.timeout_seconds:g} s")
        except dns.resolver.NoNameservers as exc:
            return CheckResult.failed("dns", f"no resolver answered: {exc}")
        except dns.exception.DNSException as exc:
            return CheckResult.failed("dns", f"{type(exc).__name__}: {exc}")
        values = {normalise(rdata.to_text()) for rdata in answer}
        missing = [value for value in settings.expected if normalise(value) not in values]
        if missing:
            return CheckResult.failed(
                "assertion",
                f"expected {', '.join(missing)} among {', '.join(sorted(values))}",
            )
        return CheckResult(Outcome.UP, size_bytes=len(values))
