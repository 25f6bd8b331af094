"""Structured logging: one JSON object per line, carrying the request id of the HTTP request or
the message ids of the batch a consumer is applying."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import structlog
from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncSession

from pingtower.common.db import create_engine, session_factory
from pingtower.common.events import Envelope, MonitorDeleted
from pingtower.common.http.app import create_app
from pingtower.common.logging import configure_logging
from pingtower.common.messaging.inbox import Inbox, inbox_table


@pytest.fixture
def json_logs() -> Iterator[Any]:
    """Production logging for one test, written to a buffer; the previous set-up put back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    saved = structlog.get_config()
    configure_logging("info", json=True)
    # Same processors and renderer; only the stream is swapped (pytest swaps sys.stderr
    # between a fixture and its test, so the one configure_logging saw would be stale).
    buffer = io.StringIO()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(buffer))

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in buffer.getvalue().splitlines() if line]

    try:
        yield lines
    finally:
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)


def test_each_log_line_is_one_json_object_with_level_and_utc_time(json_logs: Any) -> None:
    structlog.get_logger("test").info("monitor created", monitor_id="m1")
    structlog.get_logger("test").debug("below the level")
    [line] = json_logs()
    assert line["event"] == "monitor created"
    assert line["monitor_id"] == "m1"
    assert line["level"] == "info"
    assert line["timestamp"].endswith("Z")


def test_an_error_line_carries_its_traceback(json_logs: Any) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        structlog.get_logger("test").exception("failed")
    [line] = json_logs()
    assert line["level"] == "error"
    assert "ValueError: boom" in line["exception"]


async def test_lines_logged_while_serving_a_request_carry_its_request_id(json_logs: Any) -> None:
    router = APIRouter()

    @router.get("/work")
    async def work() -> dict[str, str]:
        structlog.get_logger("test").info("working")
        return {}

    app = create_app("t", routers=[router])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        await client.get("/api/v1/work", headers={"x-request-id": "req-42"})
    structlog.get_logger("test").info("after the request")
    lines = json_logs()
    assert [(line["event"], line.get("request_id")) for line in lines] == [
        ("working", "req-42"),
        ("after the request", None),
    ]


async def test_lines_logged_while_consuming_carry_the_consumer_and_message_ids(
    json_logs: Any, sqlite_url: str
) -> None:
    metadata = sa.MetaData()
    table = inbox_table(metadata)
    engine = create_engine(sqlite_url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    inbox = Inbox(table, consumer="statistics.monitors")

    async def effect(_session: AsyncSession, _batch: Sequence[Envelope]) -> None:
        structlog.get_logger("test").info("applying")

    envelope = Envelope.wrap(MonitorDeleted(monitor_id=uuid.uuid4()), producer="p", tenant="t")
    try:
        await inbox.handler(session_factory(engine), effect)([envelope])
    finally:
        await engine.dispose()
    [line] = [line for line in json_logs() if line["event"] == "applying"]
    assert line["consumer"] == "statistics.monitors"
    assert line["message_ids"] == [str(envelope.id)]
