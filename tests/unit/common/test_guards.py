"""Request guards: body size limit, rate limit per caller, security headers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from fastapi import APIRouter, Request
from hypothesis import given
from hypothesis import strategies as st

from pingtower.common.http.app import create_app
from pingtower.common.http.guards import RateLimiter


def app_with(max_body_bytes: int = 1024, rate_per_minute: int = 0) -> httpx.AsyncClient:
    router = APIRouter()

    @router.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    app = create_app(
        "guarded", routers=[router], max_body_bytes=max_body_bytes, rate_per_minute=rate_per_minute
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test")


def test_a_burst_up_to_the_limit_passes_then_the_caller_waits() -> None:
    limiter = RateLimiter(60)
    assert all(limiter.take("a", 0.0) == 0 for _ in range(60))
    assert limiter.take("a", 0.0) > 0
    assert limiter.take("b", 0.0) == 0, "another caller has its own bucket"
    assert limiter.take("a", 1.0) == 0, "one token comes back each second at 60 a minute"


@given(st.integers(1, 500), st.floats(0, 120))
def test_the_wait_given_is_enough(per_minute: int, elapsed: float) -> None:
    limiter = RateLimiter(per_minute)
    for _ in range(per_minute):
        limiter.take("a", 0.0)
    wait = limiter.take("a", elapsed)
    if wait > 0:
        assert limiter.take("a", elapsed + wait + 1e-6) == 0


def test_the_limiter_forgets_the_least_recent_callers() -> None:
    limiter = RateLimiter(1, max_callers=2)
    limiter.take("a", 0.0)
    limiter.take("b", 0.0)
    limiter.take("c", 0.0)
    assert limiter.take("a", 0.0) == 0, "a was forgotten, so it starts with a full bucket"


async def test_a_body_over_the_limit_is_refused_with_413() -> None:
    async with app_with(max_body_bytes=1024) as client:
        assert (await client.post("/api/v1/echo", content=b"x" * 1024)).status_code == 200
        response = await client.post("/api/v1/echo", content=b"x" * 1025)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert "1024 bytes" in response.json()["detail"]


async def test_a_chunked_body_over_the_limit_is_refused_too() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 200

    async with app_with(max_body_bytes=1024) as client:
        response = await client.post("/api/v1/echo", content=chunks())
    assert response.status_code == 413


async def test_too_many_requests_get_429_with_retry_after() -> None:
    async with app_with(rate_per_minute=3) as client:
        statuses = [(await client.post("/api/v1/echo")).status_code for _ in range(4)]
        refused = await client.post("/api/v1/echo")
        other = await client.post("/api/v1/echo", headers={"Authorization": "Bearer other"})
        health = [(await client.get("/healthz")).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429]
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["content-type"] == "application/problem+json"
    assert other.status_code == 200, "another credential has its own budget"
    assert health == [200] * 5, "health checks are never throttled"


async def test_every_response_carries_the_security_headers() -> None:
    async with app_with() as client:
        for response in (await client.get("/healthz"), await client.get("/nowhere")):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["referrer-policy"] == "no-referrer"
