"""How a process runs its components: prepare every one, start the bus, start every one; stop in
reverse and close the bus; readiness and routers gathered from all of them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import httpx
import pytest
from fastapi import APIRouter, Depends

from pingtower.common.http.app import ReadinessCheck
from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.runtime import Component, build_app
from pingtower.common.security import Principal, SingleWorkspaceAuthenticator, require


class RecordingBus(InProcessBus):
    def __init__(self, journal: list[str]) -> None:
        super().__init__()
        self.journal = journal

    async def start(self) -> None:
        self.journal.append("bus.start")
        await super().start()

    async def close(self) -> None:
        self.journal.append("bus.close")
        await super().close()


class Recording(Component):
    def __init__(self, name: str, journal: list[str], *, fail_start: bool = False) -> None:
        self.name = name
        self.journal = journal
        self.fail_start = fail_start

    @property
    def routers(self) -> Sequence[APIRouter]:
        router = APIRouter()

        @router.get(f"/{self.name}/whoami")
        async def whoami(principal: Principal = Depends(require("viewer"))) -> dict[str, str]:
            return {"component": self.name, "tenant": principal.tenant}

        return [router]

    @property
    def readiness(self) -> Mapping[str, ReadinessCheck]:
        async def database() -> None:
            return None

        return {f"{self.name}.database": database}

    async def prepare(self) -> None:
        self.journal.append(f"{self.name}.prepare")

    async def start(self) -> None:
        if self.fail_start:
            raise RuntimeError(f"{self.name} cannot start")
        self.journal.append(f"{self.name}.start")

    async def stop(self) -> None:
        self.journal.append(f"{self.name}.stop")


async def test_components_are_prepared_before_the_bus_starts_and_stopped_in_reverse() -> None:
    journal: list[str] = []
    components = [Recording("pinger", journal), Recording("statistics", journal)]
    app = build_app("All", components, RecordingBus(journal), SingleWorkspaceAuthenticator())
    async with app.router.lifespan_context(app):
        assert journal == [
            "pinger.prepare",
            "statistics.prepare",
            "bus.start",
            "pinger.start",
            "statistics.start",
        ]
        journal.clear()
    assert journal == ["statistics.stop", "pinger.stop", "bus.close"]


async def test_a_component_that_fails_to_start_stops_those_already_started() -> None:
    journal: list[str] = []
    components = [
        Recording("pinger", journal),
        Recording("statistics", journal, fail_start=True),
        Recording("notificator", journal),
    ]
    app = build_app("All", components, RecordingBus(journal), SingleWorkspaceAuthenticator())
    with pytest.raises(RuntimeError, match="statistics cannot start"):
        async with app.router.lifespan_context(app):
            pass
    assert journal[-2:] == ["pinger.stop", "bus.close"]
    assert "notificator.start" not in journal


async def test_the_app_serves_every_components_routes_and_readiness() -> None:
    journal: list[str] = []
    components = [Recording("pinger", journal), Recording("statistics", journal)]
    app = build_app("All", components, RecordingBus(journal), SingleWorkspaceAuthenticator("acme"))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        pinger = await client.get("/api/v1/pinger/whoami")
        statistics = await client.get("/api/v1/statistics/whoami")
        ready = await client.get("/readyz")
    assert pinger.json() == {"component": "pinger", "tenant": "acme"}
    assert statistics.json() == {"component": "statistics", "tenant": "acme"}
    assert ready.status_code == 200
    assert set(ready.json()["checks"]) == {"broker", "pinger.database", "statistics.database"}
