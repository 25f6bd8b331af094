"""HTTP(S) check: one request (following redirects up to a limit) judged on status, body and time.

Runs on the lean client of `http_client` (a fresh connection per check, the egress policy on
every hop's addresses, per-phase timings of the first hop); aiohttp cost more CPU per check than
everything else in it.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import re
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pingtower.common.egress import EgressDeniedError
from pingtower.common.events import CheckJob, Outcome
from pingtower.pinger.checks.base import Check, CheckContext, CheckResult, register
from pingtower.pinger.checks.http_client import (
    HttpClient,
    HttpClientError,
    Request,
    header_problem,
)
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


@register
class HttpCheck(Check):
    type_name = "http"
    settings_model = HttpSettings

    def validate_target(self, target: str) -> str:
        return validate_http_url(target)

    def check_settings(self, settings: Any) -> None:
        assert isinstance(settings, HttpSettings)
        StatusCodes.parse(settings.expected_status, "settings.expected_status")
        for name, value in settings.headers.items():
            problem = header_problem(name, value)
            if problem is not None:
                raise InvalidSettingError("settings.headers", problem)
        if settings.keyword is not None and settings.keyword_is_regex:
            try:
                re.compile(settings.keyword)
            except re.error as exc:
                raise InvalidSettingError("settings.keyword", f"bad regex: {exc}") from None
        if settings.basic_auth is not None and settings.bearer_token is not None:
            raise InvalidSettingError("settings.bearer_token", "use basic_auth or bearer_token")

    async def run(self, job: CheckJob, context: CheckContext) -> CheckResult:
        settings, expected = _prepared(json.dumps(job.settings, sort_keys=True))
        started = time.perf_counter()
        phases: dict[str, float] = {}
        try:
            async with asyncio.timeout(job.timeout_seconds):
                result = await self._request(job.target, settings, expected, context, phases)
        except TimeoutError:
            result = CheckResult.failed("timeout", f"no answer within {job.timeout_seconds:g} s")
        except EgressDeniedError as exc:
            result = CheckResult.failed("blocked", str(exc))
        except HttpClientError as exc:
            result = CheckResult.failed(exc.kind, str(exc))
        result.latency_ms = round((time.perf_counter() - started) * 1000, 3)
        result.phases_ms = {**phases, "total": result.latency_ms}
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
        expected: StatusCodes,
        context: CheckContext,
        phases: dict[str, float],
    ) -> CheckResult:
        headers = dict(settings.headers)
        if settings.bearer_token is not None:
            headers["Authorization"] = f"Bearer {settings.bearer_token}"
        if settings.basic_auth is not None:
            credentials = f"{settings.basic_auth.username}:{settings.basic_auth.password}"
            headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
        client = HttpClient(
            allow_private=context.allow_private,
            allow_networks=context.allow_networks,
            tls=context.tls,
        )
        response = await client.request(
            Request(
                method=settings.method,
                url=url,
                headers=headers,
                body=settings.body.encode() if settings.body is not None else None,
                max_body=settings.max_size_bytes,
                verify_tls=settings.verify_tls,
                follow_redirects=settings.follow_redirects,
                max_redirects=settings.max_redirects,
            )
        )
        phases.update(response.phases_ms)
        body = response.body
        extra: dict[str, Any] = {
            "status_code": response.status,
            "size_bytes": len(body),
            "cert_expires_at": response.cert_expires_at,
        }
        if response.too_large:
            return CheckResult.failed(
                "size", f"response larger than {settings.max_size_bytes} bytes", **extra
            )
        if response.status not in expected:
            return CheckResult.failed(
                "http_status",
                f"status {response.status} is not one of {', '.join(settings.expected_status)}",
                **extra,
            )
        if settings.keyword is not None:
            text = _decode(body, response.charset)
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


@functools.lru_cache(maxsize=4096)
def _prepared(settings_json: str) -> tuple[HttpSettings, StatusCodes]:
    """The validated settings and status codes of a monitor: most monitors' settings repeat from
    check to check, and validating them took a tenth of the check's CPU. The models are never
    changed after this."""
    settings = HttpSettings.model_validate_json(settings_json)
    return settings, StatusCodes.parse(settings.expected_status)


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")
