"""The service as the process runs it: built by `build`, started by the app's lifespan, its
migration matching its tables on both databases."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.runtime import build_app
from pingtower.common.security import SingleWorkspaceAuthenticator
from pingtower.common.settings import Settings
from pingtower.statistics.service import StatisticsService, build
from pingtower.statistics.store.tables import metadata


def test_build_gives_one_component_for_the_statistics_role(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    (component,) = build(settings, InProcessBus(), ["statistics"])
    assert component.name == "statistics"
    assert build(settings, InProcessBus(), []) == []
    with pytest.raises(ValueError, match="unknown statistics roles"):
        build(settings, InProcessBus(), ["scheduler"])


async def test_the_app_starts_migrates_and_is_ready(database_url: str, tmp_path: Path) -> None:
    bus = InProcessBus()
    components = build(Settings(statistics_database_url=database_url), bus, ["statistics"])
    app = build_app("statistics", components, bus, SingleWorkspaceAuthenticator())
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://s") as client,
    ):
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["statistics-database"] == "ok"
        overview = await client.get("/api/v1/stats/overview")
        assert overview.json()["items"] == []
        spec = (await client.get("/api/v1/openapi.json")).json()
        assert "/api/v1/stats/monitors/{monitor_id}/timeseries" in spec["paths"]


def not_a_partition(name: str | None, type_: str, parents: dict[str, str | None]) -> bool:
    """Daily partitions of `results` are made at run time, not by the models."""
    table = name if type_ == "table" else parents.get("table_name")
    return not (table or "").startswith(("results_p", "results_default"))


async def test_the_migration_creates_exactly_the_tables_of_the_models(database_url: str) -> None:
    service = StatisticsService(Settings(statistics_database_url=database_url), InProcessBus())
    await service.prepare()
    try:

        def differences(connection: Any) -> list[Any]:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "include_name": not_a_partition}
            )
            return list(compare_metadata(context, metadata))

        async with service.engine.connect() as connection:
            assert await connection.run_sync(differences) == []
    finally:
        await service.engine.dispose()


async def test_raw_results_live_in_daily_partitions_that_retention_drops_whole(
    pg_url: str,
) -> None:
    from datetime import timedelta

    from sqlalchemy import text

    from pingtower.statistics.service import Retention
    from pingtower.statistics.store import partitions
    from tests.integration.statistics.conftest import Clock
    from tests.integration.statistics.story import NOV10, check, everything, feed_handler, wrap

    clock = Clock()
    service = StatisticsService(
        Settings(statistics_database_url=pg_url),
        InProcessBus(),
        clock=clock,
        retention=Retention(raw=timedelta(days=1)),
    )
    await service.prepare()  # makes 10..13 Nov
    try:
        await feed_handler(service.handler, everything())
        ancient = check(1, 5.0).model_copy(
            update={"finished_at": NOV10 - timedelta(days=40), "check_id": uuid.uuid4()}
        )
        await feed_handler(service.handler, [wrap(ancient)])
        async with service.sessions() as session:
            assert (await partitions.partitions(session))[0].isoformat() == "2026-11-10"
            in_day = await session.scalar(text("SELECT count(*) FROM results_p20261110"))
            in_default = await session.scalar(text("SELECT count(*) FROM results_default"))
        assert (in_day, in_default) == (60, 1)

        clock.now = NOV10 + timedelta(days=10)
        removed = await service.prune()
        assert removed["raw_partitions"] == 4  # 10..13 Nov ended before 19 Nov
        assert removed["raw"] == 1  # the ancient one, from the default partition
        async with service.sessions() as session:
            days = await partitions.partitions(session)
            assert [d.isoformat() for d in days] == [
                "2026-11-20",
                "2026-11-21",
                "2026-11-22",
                "2026-11-23",
            ]
            assert await session.scalar(text("SELECT count(*) FROM results")) == 0
    finally:
        await service.engine.dispose()


async def test_its_periodic_jobs_run_one_at_a_time(tmp_path: Path) -> None:
    """Two jobs due together: the second waits for the first (each is paced to a share of
    the event loop; together they took twice that share)."""
    service = StatisticsService(Settings(data_dir=tmp_path), InProcessBus())
    running: list[str] = []
    met: list[set[str]] = []
    done = {"fold": asyncio.Event(), "snapshot": asyncio.Event()}

    def job(name: str) -> Callable[[], Awaitable[None]]:
        async def work() -> None:
            running.append(name)
            met.append(set(running))
            for _ in range(5):
                await asyncio.sleep(0.01)
            running.remove(name)
            done[name].set()

        work.__name__ = name
        return work

    tasks = [asyncio.create_task(service._every(timedelta(hours=1), job(name))) for name in done]
    try:
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in done.values())), 5)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await service.engine.dispose()
    assert met == [{"fold"}, {"snapshot"}]
