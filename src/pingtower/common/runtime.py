"""How a process runs services: each service is a Component with three steps, and one function
runs any set of components behind one HTTP app, in either mode."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from pingtower.common.http.app import ReadinessCheck, create_app
from pingtower.common.messaging.bus import Bus
from pingtower.common.security import Authenticator
from pingtower.common.settings import Settings


class Component:
    """One service (or one role of it) inside a process."""

    name: str = "component"

    @property
    def routers(self) -> Sequence[APIRouter]:
        return ()

    @property
    def root_routers(self) -> Sequence[APIRouter]:
        """Routers served at the root, outside /api/v1 (e.g. Healthchecks-style /ping URLs)."""
        return ()

    @property
    def readiness(self) -> Mapping[str, ReadinessCheck]:
        return {}

    async def prepare(self) -> None:
        """Migrate the database and subscribe consumers; runs before the bus starts."""

    async def start(self) -> None:
        """Start background work (relays, loops); runs after the bus has started."""

    async def stop(self) -> None:
        """Stop background work and release resources."""


def build_app(
    title: str,
    components: Sequence[Component],
    bus: Bus,
    authenticator: Authenticator,
    *,
    description: str = "",
    settings: Settings | None = None,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        for component in components:
            await component.prepare()
        await bus.start()
        started: list[Component] = []
        try:
            for component in components:
                await component.start()
                started.append(component)
            yield
        finally:
            for component in reversed(started):
                await component.stop()
            await bus.close()

    readiness: dict[str, ReadinessCheck] = {"broker": bus.check}
    for component in components:
        readiness.update(component.readiness)
    routers = [router for component in components for router in component.routers]
    root_routers = [router for component in components for router in component.root_routers]
    app = create_app(
        title,
        routers=routers,
        root_routers=root_routers,
        readiness=readiness,
        lifespan=lifespan,
        description=description,
        **(
            {}
            if settings is None
            else {
                "max_body_bytes": settings.max_request_bytes,
                "rate_per_minute": settings.rate_limit_per_minute,
            }
        ),
    )
    app.state.authenticator = authenticator
    app.state.components = {component.name: component for component in components}
    return app
