"""HTTP(S) check: one request (following redirects up to a limit) judged on status, body and time.

Runs on the probe's one shared aiohttp session, built by `guarded_session` (egress policy on every
connect, redirects included; a fresh connection per check). Phase timings come from aiohttp's
tracing hooks; they describe the first hop.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import ssl
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from pingtower.common.egress import EgressDeniedError
from pingtower.common.events import CheckJob, Outcome
from pingtower.pinger.checks.base import Check, CheckContext, CheckResult, register
from pingtower.pinger.domain.assertions import JsonAssertion, Op, failed_assertion
from pingtower.pinger.domain.monitor import (
    InvalidSettingError,
    StatusCodes,
    validate_http_url,
)


class BasicAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str
    password: str


class JsonAssertionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(max_length=500, description="Dot-separated keys; numbers index lists.")
    op: Op = "eq"
    value: Any = None


class HttpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    headers: dict[str, str] = {}
    body: str | None = Field(None, max_length=65_536)
    basic_auth: BasicAuth | None = None
    bearer_token: str | None = None
    expected_status: list[str] = ["200-299"]
    follow_redirects: bool = True
    max_redirects: int = Field(5, ge=0, le=30)
    verify_tls: bool = True
    keyword: str | None = Field(None, min_length=1, max_length=1000)
    keyword_is_regex: bool = False
    keyword_mode: Literal["present", "absent"] = "present"
    json_assertions: list[JsonAssertionSettings] = Field([], max_length=20)
    degraded_above_ms: float | None = Field(None, gt=0)
    max_size_bytes: int = Field(1_048_576, ge=1, le=64 * 1_048_576)


def _trace_config() -> aiohttp.TraceConfig:
    """Record the first occurrence of each phase boundary in the request's context."""
    trace = aiohttp.TraceConfig()

    def mark(name: str) -> Any:
        async def hook(_session: object, context: SimpleNamespace, _params: object) -> None:
            marks: dict[str, float] | None = getattr(context.trace_request_ctx, "marks", None)
            if marks is not None:
                marks.setdefault(name, time.perf_counter())

        return hook

    trace.on_dns_resolvehost_start.append(mark("dns_start"))
    trace.on_dns_resolvehost_end.append(mark("dns_end"))
    trace.on_connection_create_start.append(mark("connect_start"))
    trace.on_connection_create_end.append(mark("connect_end"))
    trace.on_request_headers_sent.append(mark("sent"))
    trace.on_request_end.append(mark("first_byte"))
    return trace


TRACE_CONFIG = _trace_config()


def _phases(marks: dict[str, float], started: float) -> dict[str, float]:
    def span(a: str, b: str) -> float | None:
        if a in marks and b in marks:
            return round((marks[b] - marks[a]) * 1000, 3)
        return None

    phases: dict[str, float] = {}
    dns = span("dns_start", "dns_end")
    if dns is not None:
        phases["dns"] = dns
    connect = span("connect_start", "connect_end")
    if connect is not None:
        # aiohttp's connection span includes resolution and the TLS handshake.
        phases["connect"] = round(connect - (dns or 0.0), 3)
    if "first_byte" in marks:
        phases["first_byte"] = round((marks["first_byte"] - started) * 1000, 3)
    return phases


def _cert_expiry(response: aiohttp.ClientResponse) -> datetime | None:
    connection = response.connection
    transport = connection.transport if connection is not None else None
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject):
        return None
    cert = ssl_object.getpeercert()
    not_after = cert.get("notAfter") if cert else None
    if not isinstance(not_after, str):
        return None
    return datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), UTC)


@register
class HttpCheck(Check):
    type_name = "http"
    settings_model = HttpSettings

    def validate_target(self, target: str) -> str:
        return validate_http_url(target)

    def check_settings(self, settings: Any) -> None:
        assert isinstance(settings, HttpSettings)
        StatusCodes.parse(settings.expected_status, "settings.expected_status")
        if settings.keyword is not None and settings.keyword_is_regex:
            try:
                re.compile(settings.keyword)
            except re.error as exc:
                raise InvalidSettingError("settings.keyword", f"bad regex: {exc}") from None
        if settings.basic_auth is not None and settings.bearer_token is not None:
            raise InvalidSettingError("settings.bearer_token", "use basic_auth or bearer_token")

    async def run(self, job: CheckJob, context: CheckContext) -> CheckResult:
        settings = HttpSettings.model_validate(job.settings)
        started = time.perf_counter()
        marks: dict[str, float] = {}
        try:
            async with asyncio.timeout(job.timeout_seconds):
                result = await self._request(job.target, settings, context, marks, started)
        except TimeoutError:
            result = CheckResult.failed("timeout", f"no answer within {job.timeout_seconds:g} s")
        except EgressDeniedError as exc:
            result = CheckResult.failed("blocked", str(exc))
        except aiohttp.ClientConnectorDNSError as exc:
            result = CheckResult.failed("dns", f"cannot resolve: {exc}")
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as exc:
            result = CheckResult.failed("tls", str(exc))
        except aiohttp.TooManyRedirects:
            result = CheckResult.failed("redirect", f"more than {settings.max_redirects} redirects")
        except aiohttp.ClientConnectorError as exc:
            result = CheckResult.failed("connect", str(exc))
        except (aiohttp.ClientError, ValueError) as exc:
            result = CheckResult.failed("protocol", f"{type(exc).__name__}: {exc}")
        result.latency_ms = round((time.perf_counter() - started) * 1000, 3)
        result.phases_ms = {**_phases(marks, started), "total": result.latency_ms}
        slow_above = settings.degraded_above_ms
        if (
            result.outcome == Outcome.UP
            and slow_above is not None
            and result.latency_ms > slow_above
        ):
            result.outcome = Outcome.DEGRADED
            result.error_kind = "slow"
            result.error_message = f"{result.latency_ms:.0f} ms is above {slow_above:g} ms"
        return result

    async def _request(
        self,
        url: str,
        settings: HttpSettings,
        context: CheckContext,
        marks: dict[str, float],
        started: float,
    ) -> CheckResult:
        headers = dict(settings.headers)
        if settings.bearer_token is not None:
            headers["Authorization"] = f"Bearer {settings.bearer_token}"
        if settings.basic_auth is not None:
            credentials = f"{settings.basic_auth.username}:{settings.basic_auth.password}"
            headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
        async with context.http.request(
            settings.method,
            url,
            headers=headers,
            data=settings.body,
            allow_redirects=settings.follow_redirects,
            max_redirects=settings.max_redirects,
            ssl=settings.verify_tls,
            trace_request_ctx=SimpleNamespace(marks=marks),
        ) as response:
            cert_expires_at = _cert_expiry(response)
            body = await response.content.read(settings.max_size_bytes + 1)
            while len(body) <= settings.max_size_bytes and not response.content.at_eof():
                chunk = await response.content.read(settings.max_size_bytes + 1 - len(body))
                if not chunk:
                    break
                body += chunk
            extra: dict[str, Any] = {
                "status_code": response.status,
                "size_bytes": len(body),
                "cert_expires_at": cert_expires_at,
            }
            if len(body) > settings.max_size_bytes:
                return CheckResult.failed(
                    "size", f"response larger than {settings.max_size_bytes} bytes", **extra
                )
            if response.status not in StatusCodes.parse(settings.expected_status):
                return CheckResult.failed(
                    "http_status",
                    f"status {response.status} is not one of {', '.join(settings.expected_status)}",
                    **extra,
                )
            if settings.keyword is not None:
                text = body.decode(response.charset or "utf-8", errors="replace")
                found = (
                    re.search(settings.keyword, text) is not None
                    if settings.keyword_is_regex
                    else settings.keyword in text
                )
                if found != (settings.keyword_mode == "present"):
                    word = "missing" if settings.keyword_mode == "present" else "present"
                    return CheckResult.failed(
                        "assertion", f"keyword {settings.keyword!r} {word} in the body", **extra
                    )
            if settings.json_assertions:
                try:
                    document = json.loads(body)
                except ValueError:
                    return CheckResult.failed("assertion", "the body is not JSON", **extra)
                failed = failed_assertion(
                    document,
                    [JsonAssertion(a.path, a.op, a.value) for a in settings.json_assertions],
                )
                if failed is not None:
                    return CheckResult.failed("assertion", failed, **extra)
            return CheckResult(Outcome.UP, **extra)
