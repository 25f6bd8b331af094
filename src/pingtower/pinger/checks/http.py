"""HTTP(S) check: one request (following redirects up to a limit) judged on status, body and time.

Runs on the lean client of `http_client` (a fresh connection per check, the egress policy on
every hop's addresses, per-phase timings of the first hop); aiohttp cost more CPU per check than
everything else in it. What a monitor's settings imply (the validated model, the accepted codes,
the request's headers and body, a compiled regex, the JSON assertions) is worked out once per
distinct settings (`_prepared`), and the request per monitor (`_request`), not per check.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import re
import sys
import time
from dataclasses import dataclass
from typing import Any, Literal

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field

from pingtower.common.egress import EgressDeniedError
from pingtower.common.events import CheckJob, Outcome
from pingtower.pinger.checks.base import Check, CheckContext, CheckResult, ms, register
from pingtower.pinger.checks.http_client import (
    TARGETS_CACHED,
    HttpClient,
    HttpClientError,
    Request,
    Response,
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
        # The job's fields read from its dict (where pydantic keeps them): an attribute of a
        # model goes through its class's __getattr__ hook, 0.1 µs each.
        fields = job.__dict__
        settings, timeout = fields["settings"], fields["timeout_seconds"]
        prepared = _prepared_shared(settings) if context.shared_settings else _prepared(settings)
        started = time.perf_counter()
        # The client keeps the deadline itself (one loop timer serves many checks' deadlines,
        # cheaper than asyncio.timeout around each) and raises TimeoutError once it has passed.
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            response = await _client(context).request(
                _request(fields["target"], prepared), deadline
            )
        except TimeoutError:
            result = CheckResult.failed("timeout", f"no answer within {timeout:g} s")
        except EgressDeniedError as exc:
            result = CheckResult.failed("blocked", str(exc))
        except HttpClientError as exc:
            result = CheckResult.failed(exc.kind, str(exc))
        else:
            result = _judged(response, prepared)
        latency_ms = result.latency_ms = ms(time.perf_counter() - started)
        result.phases_ms["total"] = latency_ms  # a dict of this result's own
        slow_above = prepared.settings.degraded_above_ms
        if result.outcome == _UP and slow_above is not None and latency_ms > slow_above:
            result.outcome = Outcome.DEGRADED
            result.error_kind = "slow"
            result.error_message = f"{latency_ms:.0f} ms is above {slow_above:g} ms"
        return result


# The client of the last context seen: a probe has one context, and a client holds nothing
# but the context's policy (building one per check was a microsecond).
_LAST_CLIENT: list[tuple[CheckContext, HttpClient]] = []


def _client(context: CheckContext) -> HttpClient:
    if _LAST_CLIENT and _LAST_CLIENT[0][0] is context:
        return _LAST_CLIENT[0][1]
    client = HttpClient(
        allow_private=context.allow_private,
        allow_networks=context.allow_networks,
        tls=context.tls,
    )
    _LAST_CLIENT[:] = [(context, client)]
    return client


@dataclass(frozen=True, slots=True, eq=False)  # compared and hashed as itself: a cache key
class _Prepared:
    """What a monitor's settings imply for every one of its checks."""

    settings: HttpSettings
    accepted: tuple[tuple[int, int], ...]  # status code ranges, low to high inclusive
    headers: dict[str, str]  # the given headers and the authorization from the settings
    body: bytes | None
    pattern: re.Pattern[str] | None  # the keyword, when it is a regex
    assertions: list[JsonAssertion]


# Distinct settings kept prepared. Monitors with equal settings share an entry (defaults are
# the usual case); beyond this many distinct ones, the least recently used are prepared again.
SETTINGS_CACHED = 4096


# Settings dicts kept with their preparation, by identity (`CheckContext.shared_settings`). At
# this many, the entries of dicts nothing else holds any more (their monitor was edited or
# deleted) are dropped. What a sweep leaves is held by live monitors' jobs, so the next sweep
# waits until as many again were added (`_GROWN_TO`): the cache stays under twice the fleet and
# a sweep's pass costs O(1) per entry added. Clearing every entry when a sweep freed little, as
# before, made a fleet above the bound prepare its checks again by JSON and pass over 40,000
# entries at each clear (a 50 ms stall, seen at 50,000 monitors).
SHARED_SETTINGS_KEPT = 40_000
_GROWN_TO = [0]
_BY_IDENTITY: dict[int, tuple[dict[str, Any], _Prepared]] = {}


def _prepared_shared(settings: dict[str, Any]) -> _Prepared:
    """`_prepared(settings)` for a dict shared by a monitor's runs and never changed: found by
    its identity, without writing it as JSON (the JSON key was a twentieth of the probe's CPU
    in the embedded process)."""
    kept = _BY_IDENTITY.get(id(settings))
    # The entry keeps its dict alive, so no other dict can have its id meanwhile.
    if kept is not None:
        return kept[1]
    prepared = _prepared(settings)
    if len(_BY_IDENTITY) >= max(SHARED_SETTINGS_KEPT, _GROWN_TO[0]):
        _forget_unheld()
        _GROWN_TO[0] = 2 * len(_BY_IDENTITY)
    _BY_IDENTITY[id(settings)] = (settings, prepared)
    return prepared


def _forget_unheld() -> None:
    for key, entry in list(_BY_IDENTITY.items()):
        # Referred to by the entry, and by getrefcount's argument: nothing else holds it.
        if sys.getrefcount(entry[0]) <= 2:
            del _BY_IDENTITY[key]


def _prepared(settings: dict[str, Any]) -> _Prepared:
    # The key is the settings' JSON: a dict cannot be a key, and pydantic-core writes it in
    # about 2 µs (json.dumps with sorted keys took 15). NaN is written as NaN, not null.
    return _prepare(pydantic_core.to_json(settings, inf_nan_mode="constants"))


@functools.lru_cache(maxsize=SETTINGS_CACHED)
def _prepare(settings_json: bytes) -> _Prepared:
    """Validating the settings took a tenth of the check's CPU; the result is never changed."""
    settings = HttpSettings.model_validate_json(settings_json)
    headers = dict(settings.headers)
    if settings.bearer_token is not None:
        headers["Authorization"] = f"Bearer {settings.bearer_token}"
    if settings.basic_auth is not None:
        credentials = f"{settings.basic_auth.username}:{settings.basic_auth.password}"
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    regex = settings.keyword is not None and settings.keyword_is_regex
    return _Prepared(
        settings=settings,
        accepted=StatusCodes.parse(settings.expected_status).ranges,
        headers=headers,
        body=settings.body.encode() if settings.body is not None else None,
        pattern=re.compile(settings.keyword) if regex and settings.keyword else None,
        assertions=[JsonAssertion(a.path, a.op, a.value) for a in settings.json_assertions],
    )


def _accepts(accepted: tuple[tuple[int, int], ...], status: int) -> bool:
    # A loop, not any() over a generator: the generator was 2 % of the check's CPU.
    for low, high in accepted:  # noqa: SIM110
        if low <= status <= high:
            return True
    return False


@functools.lru_cache(maxsize=TARGETS_CACHED)  # as many as the client keeps parsed URLs
def _request(url: str, prepared: _Prepared) -> Request:
    """The request a monitor's checks make, shared by them: the client never changes it, and
    keeps its first hop's bytes on it (building the request and its head per check was 2 µs)."""
    settings = prepared.settings
    return Request(
        method=settings.method,
        url=url,
        headers=prepared.headers,
        body=prepared.body,
        max_body=settings.max_size_bytes,
        verify_tls=settings.verify_tls,
        follow_redirects=settings.follow_redirects,
        max_redirects=settings.max_redirects,
    )


# A member read from its enum class goes through a Python-level descriptor (0.1 µs).
_UP = Outcome.UP


def _judged(response: Response, prepared: _Prepared) -> CheckResult:
    """The result of a response: its status, size and body against the settings."""
    settings = prepared.settings
    status = response.status
    body = response.body
    if response.too_large or not _accepts(prepared.accepted, status):
        return _failed(response, prepared)
    if settings.keyword is not None:
        text = _decode(body, response.charset)
        if prepared.pattern is not None:
            found = prepared.pattern.search(text) is not None
        else:
            found = settings.keyword in text
        if found != (settings.keyword_mode == "present"):
            word = "missing" if settings.keyword_mode == "present" else "present"
            return _failed(response, prepared, f"keyword {settings.keyword!r} {word} in the body")
    if prepared.assertions:
        try:
            document = json.loads(body)
        except ValueError:
            return _failed(response, prepared, "the body is not JSON")
        failed = failed_assertion(document, prepared.assertions)
        if failed is not None:
            return _failed(response, prepared, failed)
    return CheckResult(
        _UP,
        status_code=status,
        size_bytes=len(body),
        phases_ms=response.phases_ms,
        cert_expires_at=response.cert_expires_at,
    )


def _failed(response: Response, prepared: _Prepared, assertion: str | None = None) -> CheckResult:
    """A DOWN result for a response: too large, an unexpected status, or a failed assertion."""
    settings = prepared.settings
    if response.too_large:
        kind, message = "size", f"response larger than {settings.max_size_bytes} bytes"
    elif assertion is None:
        expected = ", ".join(settings.expected_status)
        kind, message = "http_status", f"status {response.status} is not one of {expected}"
    else:
        kind, message = "assertion", assertion
    return CheckResult.failed(
        kind,
        message,
        status_code=response.status,
        size_bytes=len(response.body),
        phases_ms=response.phases_ms,
        cert_expires_at=response.cert_expires_at,
    )


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")
