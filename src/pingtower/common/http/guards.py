"""Guards every PingTower HTTP app applies before any handler runs: a request body size limit,
a rate limit per caller, and security headers on every response.

Written as one small ASGI middleware because the body limit must also hold for chunked bodies
(no Content-Length), which only counting what `receive` yields can see.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
# Operations endpoints and heartbeat pings are not throttled: probes and cron jobs call them.
UNLIMITED_PREFIXES = ("/healthz", "/readyz", "/metrics", "/ping/")


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets per caller: `per_minute` requests a minute, bursts up to that many.
    Keeps at most `max_callers` buckets (least recently used dropped)."""

    def __init__(self, per_minute: int, *, max_callers: int = 100_000) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.max_callers = max_callers
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, caller: str, now: float) -> float:
        """0 if the request may go ahead, else the seconds to wait before retrying."""
        bucket = self._buckets.pop(caller, None)
        if bucket is None:
            bucket = _Bucket(self.capacity, now)
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        self._buckets[caller] = bucket
        if len(self._buckets) > self.max_callers:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate


class _TooLargeError(Exception):
    pass


def _caller(scope: Scope) -> str:
    """The credential if there is one (per API key or token), else the client address."""
    for name, value in scope.get("headers", []):
        if name == b"authorization" and value:
            return "cred:" + hashlib.sha256(value).hexdigest()[:32]
    client = scope.get("client")
    return f"addr:{client[0] if client else 'unknown'}"


async def _problem(send: Send, status: int, title: str, detail: str, extra: list[Any]) -> None:
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                *SECURITY_HEADERS,
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})


class GuardMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, rate_per_minute: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.limiter = RateLimiter(rate_per_minute) if rate_per_minute > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if self.limiter is not None and not path.startswith(UNLIMITED_PREFIXES):
            wait = self.limiter.take(_caller(scope), time.monotonic())
            if wait > 0:
                retry = str(max(1, math.ceil(wait))).encode()
                await _problem(
                    send,
                    429,
                    "Too Many Requests",
                    "rate limit reached; retry later",
                    [(b"retry-after", retry)],
                )
                return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                await _problem(send, 413, "Payload Too Large", self._too_large(), [])
                return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _TooLargeError
            return message

        async def secured_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        try:
            await self.app(scope, limited_receive, secured_send)
        except _TooLargeError:
            if started:
                raise
            await _problem(send, 413, "Payload Too Large", self._too_large(), [])

    def _too_large(self) -> str:
        return f"request bodies are limited to {self.max_body_bytes} bytes"
