"""Running the Pinger in a test: its components behind the real app, an event collector."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from fastapi import Request
from sqlalchemy import select

from pingtower.common.events import Envelope, utcnow
from pingtower.common.messaging.bus import Bus
from pingtower.common.runtime import Component, build_app
from pingtower.common.security import Authenticator, Principal
from pingtower.common.settings import Settings
from pingtower.pinger.service import build
from pingtower.pinger.store import monitors as monitor_store
from pingtower.pinger.store.database import PingerDatabase
from pingtower.pinger.store.states import initial_state_row
from pingtower.pinger.store.tables import monitor_states, outbox


class HeaderAuthenticator(Authenticator):
    """Tests pick the workspace and role per request: x-tenant, x-role. The prefix keeps the
    workspaces of tests that share one database apart."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    async def authenticate(self, request: Request) -> Principal | None:
        tenant = self.prefix + request.headers.get("x-tenant", "acme")
        role = request.headers.get("x-role", "admin")
        return Principal(f"user@{tenant}", tenant, frozenset({role}))


class Collector:
    """Subscribes to events on a bus and keeps them, for assertions."""

    def __init__(self, bus: Bus, keys: Sequence[str] = ("#",), name: str = "test.collector"):
        self.envelopes: list[Envelope] = []
        bus.subscribe(name, list(keys), self._keep)

    async def _keep(self, batch: Sequence[Envelope]) -> None:
        self.envelopes.extend(batch)

    def of_type(self, event_type: str) -> list[Envelope]:
        return [e for e in self.envelopes if e.type == event_type]


@asynccontextmanager
async def running_pinger(
    settings: Settings,
    bus: Bus,
    roles: Collection[str],
    *,
    before_start: Callable[[list[Component]], None] | None = None,
) -> AsyncIterator[tuple[httpx.AsyncClient, list[Component]]]:
    components = build(settings, bus, roles)
    if before_start is not None:
        before_start(components)
    authenticator = HeaderAuthenticator(f"{uuid.uuid4().hex[:8]}-")
    app = build_app("pinger (test)", components, bus, authenticator)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://pinger") as client:
            yield client, components


async def eventually(
    predicate: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.05
) -> Any:
    """Wait until `predicate()` (sync or async) is truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


async def insert_monitor(db: PingerDatabase, **overrides: Any) -> uuid.UUID:
    """A monitor straight into the database, for tests of the roles behind the API."""
    now = utcnow()
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "tenant": "acme",
        "name": "test monitor",
        "type": "http",
        "target": "http://127.0.0.1:9/",
        "settings": {},
        "tags": [],
        "interval_seconds": 60,
        "cron": None,
        "timezone": "UTC",
        "timeout_seconds": 5.0,
        "regions": ["default"],
        "failures_before_down": 2,
        "successes_before_up": 1,
        "retry_interval_seconds": 20,
        "parent_id": None,
        "paused": False,
        "created_at": now,
        "updated_at": now,
        **overrides,
    }
    async with db.sessions() as session, session.begin():
        await monitor_store.insert_monitor(session, values)
        await session.execute(
            monitor_states.insert().values(
                **initial_state_row(values["id"], values["tenant"], paused=values["paused"])
            )
        )
    return uuid.UUID(str(values["id"]))


async def outbox_events(db: PingerDatabase) -> list[Envelope]:
    async with db.sessions() as session:
        rows = (await session.execute(select(outbox.c.body).order_by(outbox.c.id))).all()
    return [Envelope.from_bytes(row.body) for row in rows]
