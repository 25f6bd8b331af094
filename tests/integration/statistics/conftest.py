"""A Statistics service on a real database (SQLite and PostgreSQL), driven over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import pytest

from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.runtime import build_app
from pingtower.common.security import SingleWorkspaceAuthenticator
from pingtower.common.settings import Settings
from pingtower.statistics.service import StatisticsService

TENANT = "acme"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime(2026, 11, 10, 12, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Harness:
    service: StatisticsService
    bus: InProcessBus
    client: httpx.AsyncClient
    outsider: httpx.AsyncClient
    clock: Clock


@pytest.fixture
async def stats(database_url: str, tmp_path: object) -> AsyncIterator[Harness]:
    """Without the background loops: a test says itself when compaction, pruning, the SLO
    evaluation and the latency snapshot run, so no loop races its assertions."""
    async with harness(database_url, tmp_path, Clock(), background=False) as running:
        yield running


@pytest.fixture
async def early_stats(database_url: str, tmp_path: object) -> AsyncIterator[Harness]:
    """At 10 Nov 08:00, before the story's checks."""
    start = datetime(2026, 11, 10, 8, tzinfo=UTC)
    async with harness(database_url, tmp_path, Clock(start), background=False) as running:
        yield running


@asynccontextmanager
async def harness(
    database_url: str, tmp_path: object, clock: Clock, *, background: bool = True
) -> AsyncIterator[Harness]:
    bus = InProcessBus()
    settings = Settings(
        statistics_database_url=database_url, data_dir=tmp_path, outbox_poll_seconds=0.05
    )
    service = StatisticsService(settings, bus, clock=clock, prune_batch=7)
    app = build_app("statistics", [service], bus, SingleWorkspaceAuthenticator(TENANT))
    other = build_app("statistics", [service], bus, SingleWorkspaceAuthenticator("globex"))
    await service.prepare()
    await bus.start()
    if background:
        await service.start()
    else:
        service.relay.start()  # events still leave; only the periodic work waits for the test
    try:
        async with (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app), base_url="http://stats"
            ) as client,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(other), base_url="http://stats"
            ) as outsider,
        ):
            yield Harness(service, bus, client, outsider, clock)
    finally:
        await bus.close()
        await service.stop()
