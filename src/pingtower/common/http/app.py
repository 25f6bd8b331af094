"""`create_app`: the FastAPI application every service (and the embedded process) is built on."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from pingtower import __version__
from pingtower.common.http.guards import GuardMiddleware
from pingtower.common.http.problems import install_problem_handlers

ReadinessCheck = Callable[[], Awaitable[None]]

REQUESTS = Counter(
    "pingtower_http_requests_total", "HTTP requests served", ["method", "route", "status"]
)
LATENCY = Histogram(
    "pingtower_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
API_PREFIX = "/api/v1"
# Metric families their owner renders ahead of the scrape (text format bytes), appended to
# /metrics: per-monitor gauges of 10,000 monitors (100,000 samples) took prometheus_client
# seconds of CPU at every scrape (statistics/metrics.py).
RENDERED_METRICS: list[Callable[[], bytes]] = []


def create_app(
    title: str,
    *,
    routers: Sequence[APIRouter] = (),
    root_routers: Sequence[APIRouter] = (),
    readiness: Mapping[str, ReadinessCheck] | None = None,
    lifespan: Any = None,
    description: str = "",
    max_body_bytes: int = 1_048_576,
    rate_per_minute: int = 0,
) -> FastAPI:
    app = FastAPI(
        title=title,
        version=__version__,
        description=description,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    app.add_middleware(
        GuardMiddleware,
        max_body_bytes=max_body_bytes,
        rate_per_minute=rate_per_minute,
    )
    checks = dict(readiness or {})

    @app.middleware("http")
    async def _context(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        try:
            response = await call_next(request)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        LATENCY.labels(request.method, path).observe(time.perf_counter() - started)
        REQUESTS.labels(request.method, path, str(response.status_code)).inc()
        response.headers["x-request-id"] = request_id
        return response

    @app.get("/healthz", tags=["operations"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Database and broker reachable")
    async def readyz() -> JSONResponse:
        results: dict[str, str] = {}
        ready = True
        for name, check in checks.items():
            try:
                await check()
                results[name] = "ok"
            except Exception as exc:
                ready = False
                results[name] = f"unavailable: {type(exc).__name__}: {exc}"[:300]
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "checks": results},
            status_code=200 if ready else 503,
        )

    # A plain function: FastAPI runs it on a worker thread, off the event loop.
    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    def metrics() -> Response:
        rendered = b"".join(render() for render in RENDERED_METRICS)
        return Response(generate_latest() + rendered, media_type=CONTENT_TYPE_LATEST)

    @app.get(API_PREFIX, tags=["operations"], summary="API root")
    async def api_root() -> dict[str, Any]:
        return {
            "name": title,
            "version": __version__,
            "openapi": f"{API_PREFIX}/openapi.json",
            "docs": f"{API_PREFIX}/docs",
        }

    for router in routers:
        app.include_router(router, prefix=API_PREFIX)
    for router in root_routers:
        app.include_router(router)
    return app
