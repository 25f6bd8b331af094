"""What every service's HTTP app gives for free: health, readiness, metrics, problem+json errors
and OpenAPI under /api/v1."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

import httpx
import pytest
import structlog
import structlog.testing
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from pingtower.common.http.app import create_app
from pingtower.common.http.problems import PROBLEM, Problem, not_found


class MonitorCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    interval_seconds: int = Field(ge=10)


# A SQLite file that the test locks from outside while a route tries to write to it.
LOCKED_DB = Path(tempfile.mkdtemp(prefix="pingtower-locked-")) / "locked.sqlite3"


def example_router() -> APIRouter:
    router = APIRouter()

    @router.post("/monitors", status_code=201)
    async def create_monitor(body: MonitorCreate) -> dict[str, str]:
        return {"name": body.name}

    @router.get("/monitors/{monitor_id}")
    async def get_monitor(monitor_id: int) -> dict[str, int]:
        if monitor_id != 1:
            raise not_found("monitor")
        return {"id": monitor_id}

    @router.get("/conflict")
    async def conflict() -> None:
        raise Problem(409, "Conflict", "name already taken", errors=[{"field": "name"}])

    @router.get("/crash")
    async def crash() -> None:
        raise RuntimeError("secret internals")

    @router.post("/locked")
    async def locked() -> None:
        engine = create_async_engine(
            f"sqlite+aiosqlite:///{LOCKED_DB}", connect_args={"timeout": 0}
        )
        try:
            async with engine.begin() as connection:
                await connection.execute(text("INSERT INTO t VALUES (1)"))
        finally:
            await engine.dispose()

    return router


async def healthy() -> None:
    return None


async def database_down() -> None:
    raise ConnectionRefusedError("connection refused by 127.0.0.1:5432")


def make_app(readiness: Mapping[str, Callable[[], Awaitable[None]]] | None = None) -> FastAPI:
    return create_app("Test service", routers=[example_router()], readiness=readiness)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = make_app({"database": healthy, "broker": healthy})
    # Unhandled errors become 500 responses, as behind a real server, instead of being raised.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["title"]
    return body


async def test_healthz_answers_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_answers_200_when_every_check_passes(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}


async def test_readyz_answers_503_and_names_the_failing_check() -> None:
    app = make_app({"database": database_down, "broker": healthy})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["broker"] == "ok"
    assert body["checks"]["database"].startswith("unavailable: ConnectionRefusedError")


async def test_metrics_are_prometheus_text_and_count_requests(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE pingtower_http_requests_total counter" in response.text
    assert 'pingtower_http_requests_total{method="GET",route="/healthz",status="200"}' in (
        response.text
    )
    assert "pingtower_http_request_seconds_bucket" in response.text


async def test_an_unknown_route_answers_problem_json_404(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/api/v1/no-such-thing"), 404)
    assert body["title"] == "Not Found"
    assert body["instance"] == "/api/v1/no-such-thing"


async def test_a_wrong_method_answers_problem_json_405(client: httpx.AsyncClient) -> None:
    assert_problem(await client.delete("/healthz"), 405)


async def test_a_validation_error_names_each_bad_field(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/monitors", json={"name": "", "interval_seconds": 1, "colour": "red"}
    )
    body = assert_problem(response, 422)
    assert body["title"] == "Validation failed"
    errors = body["errors"]
    assert isinstance(errors, list)
    assert {error["field"] for error in errors} == {"name", "interval_seconds", "colour"}
    assert all(error["message"] for error in errors)
    assert isinstance(body["detail"], str)
    assert "interval_seconds" in body["detail"]


async def test_a_bad_path_parameter_is_a_validation_problem(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/api/v1/monitors/abc"), 422)
    errors = body["errors"]
    assert isinstance(errors, list)
    assert [(error["field"], error["type"]) for error in errors] == [("monitor_id", "int_parsing")]


async def test_a_raised_problem_keeps_its_status_title_detail_and_errors(
    client: httpx.AsyncClient,
) -> None:
    body = assert_problem(await client.get("/api/v1/conflict"), 409)
    assert body["title"] == "Conflict"
    assert body["detail"] == "name already taken"
    assert body["errors"] == [{"field": "name"}]


async def test_not_found_says_what_was_not_found(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/api/v1/monitors/2"), 404)
    assert body["detail"] == "monitor not found"


async def test_an_unexpected_error_is_a_500_problem_that_hides_internals(
    client: httpx.AsyncClient,
) -> None:
    with structlog.testing.capture_logs() as logs:
        response = await client.get("/api/v1/crash")
    body = assert_problem(response, 500)
    assert "secret internals" not in response.text
    assert body["title"] == "Internal Server Error"
    # ... while the operator finds the cause in the log.
    assert [(entry["event"], entry["log_level"], entry["path"]) for entry in logs] == [
        ("unhandled error", "error", "/api/v1/crash")
    ]


async def test_a_database_locked_past_its_wait_is_a_503_to_retry(
    client: httpx.AsyncClient,
) -> None:
    holder = sqlite3.connect(LOCKED_DB, isolation_level=None)
    try:
        holder.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
        holder.execute("BEGIN EXCLUSIVE")  # another writer holds SQLite's lock
        response = await client.post("/api/v1/locked")
    finally:
        holder.close()
    body = assert_problem(response, 503)
    assert response.headers["retry-after"] == "5"
    assert "try again" in str(body["detail"])


async def test_routers_are_mounted_under_api_v1(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/monitors", json={"name": "api", "interval_seconds": 60})
    assert response.status_code == 201
    assert (await client.post("/monitors", json={})).status_code == 404


async def test_openapi_describes_the_api_under_api_v1(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["info"]["title"] == "Test service"
    assert "/api/v1/monitors" in document["paths"]
    assert "/api/v1/monitors/{monitor_id}" in document["paths"]


async def test_the_api_root_links_to_openapi(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/v1")).json()
    assert body["openapi"] == "/api/v1/openapi.json"


async def test_a_request_id_is_echoed_or_made_up(client: httpx.AsyncClient) -> None:
    given = await client.get("/healthz", headers={"x-request-id": "abc123"})
    assert given.headers["x-request-id"] == "abc123"
    made_up = await client.get("/healthz")
    assert len(made_up.headers["x-request-id"]) == 32
