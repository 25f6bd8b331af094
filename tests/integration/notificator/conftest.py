"""Fixtures for the Notificator: a real webhook receiver on loopback, and a running service."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from asgi_lifespan import LifespanManager
from fastapi import Request

from pingtower.common.events import (
    Envelope,
    MonitorCreated,
    MonitorStatusChanged,
    Status,
)
from pingtower.common.messaging.bus import Bus
from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.runtime import build_app
from pingtower.common.security import Authenticator, Principal
from pingtower.common.settings import Settings
from pingtower.notificator.delivery.worker import DeliveryWorker
from pingtower.notificator.domain.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from pingtower.notificator.service import NotificatorComponent

SECRET = "receiver-shared-secret-0123456789"


@dataclass
class Receiver:
    """A webhook receiver that verifies our signature, as a real one would.

    `fail_first` answers 500 to that many requests before accepting; `always_fail` never accepts.
    """

    fail_first: int = 0
    always_fail: bool = False
    requests: int = 0
    accepted: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    delivery_ids: list[str] = field(default_factory=list)
    url: str = ""
    # The signed webhook channel to it and the rule naming that channel, when `start_webhooked`
    # made them.
    channel_id: str = ""
    rule_id: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        timestamp = int(request.headers.get(TIMESTAMP_HEADER, "0"))
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not verify(SECRET, timestamp, body, signature, now=time.time()):
            self.bad_signatures += 1
            return web.Response(status=401)
        if self.always_fail or self.requests <= self.fail_first:
            return web.Response(status=500, text="receiver is down")
        self.accepted.append(json.loads(body))
        self.delivery_ids.append(request.headers["X-PingTower-Delivery"])
        return web.Response(status=204)


async def serve_hook(
    handle: Callable[[web.Request], Awaitable[web.Response]], runners: list[web.AppRunner]
) -> str:
    """Serves `handle` at /hook on a free loopback port until its runner, added to `runners`,
    is cleaned up; returns the hook's URL."""
    app = web.Application()
    app.router.add_route("*", "/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    runners.append(runner)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return f"http://127.0.0.1:{port}/hook"


@pytest.fixture
async def make_receiver() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    runners: list[web.AppRunner] = []

    async def make(**kwargs: Any) -> Receiver:
        receiver = Receiver(**kwargs)
        receiver.url = await serve_hook(receiver.handle, runners)
        return receiver

    yield make
    for runner in runners:
        await runner.cleanup()


@pytest.fixture(params=["sqlite", "postgresql"])
def make_database_url(request: pytest.FixtureRequest) -> Callable[[], Awaitable[str]]:
    """Storage tests run on both databases: a factory of fresh database URLs."""
    if request.param == "postgresql":
        factory: Callable[[], Awaitable[str]] = request.getfixturevalue("make_pg_database")
        return factory
    tmp_path: Path = request.getfixturevalue("tmp_path")

    async def sqlite() -> str:
        return f"sqlite+aiosqlite:///{tmp_path}/notificator-{uuid.uuid4().hex[:8]}.sqlite3"

    return sqlite


@pytest.fixture
async def database_url(make_database_url: Callable[[], Awaitable[str]]) -> str:
    return await make_database_url()


class HeaderAuthenticator(Authenticator):
    """Tests' personas: `X-Test-Tenant` and `X-Test-Role` choose who is calling."""

    async def authenticate(self, request: Request) -> Principal | None:
        tenant = request.headers.get("x-test-tenant", "acme")
        role = request.headers.get("x-test-role", "admin")
        return Principal(f"user@{tenant}", tenant, frozenset({role}))


@dataclass
class Running:
    component: NotificatorComponent
    bus: Bus
    client: httpx.AsyncClient
    published: list[Envelope]

    async def publish(self, *envelopes: Envelope) -> None:
        await self.bus.publish(list(envelopes))

    async def new_monitor_goes_down(self) -> uuid.UUID:
        """Publishes a new monitor and its UP -> DOWN; returns its id."""
        created = monitor_created()
        monitor_id = monitor_id_of(created)
        await self.publish(created, status_changed(monitor_id, Status.UP, Status.DOWN))
        return monitor_id


def notificator_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "notificator_database_url": database_url,
        "data_dir": data_dir,
        "allow_private_targets": True,
        "delivery_max_attempts": 4,
        "delivery_backoff_seconds": 0.05,
        "outbox_poll_seconds": 0.05,
        "public_url": "https://pingtower.example",
    }
    values.update(overrides)
    return Settings(**values)


# How the tests name the fixtures' factories.
Start = Callable[..., Awaitable[Running]]
MakeReceiver = Callable[..., Awaitable[Receiver]]
StartWebhooked = Callable[..., Awaitable[tuple[Running, Receiver]]]


@pytest.fixture
async def start_notificator(
    tmp_path: Path,
) -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    stack: list[tuple[LifespanManager, httpx.AsyncClient]] = []

    async def start(database_url: str, *, bus: Bus | None = None, **overrides: Any) -> Running:
        settings = notificator_settings(database_url, tmp_path, **overrides)
        bus = bus or InProcessBus()
        component = NotificatorComponent(settings, bus)
        published: list[Envelope] = []

        async def record(batch: Any) -> None:
            published.extend(batch)

        bus.subscribe("test.notifications", ["notification.*"], record)
        app = build_app("notificator", [component], bus, HeaderAuthenticator())
        # Above the delivery worker's own stop bound (send timeout + 5 s) on a loaded machine.
        manager = LifespanManager(app, startup_timeout=30, shutdown_timeout=60)
        await manager.__aenter__()
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://test"
        )
        stack.append((manager, client))
        return Running(component, bus, client, published)

    yield start
    for manager, client in reversed(stack):
        await client.aclose()
        watchdog = asyncio.create_task(_report_a_slow_stop(20))
        try:
            await manager.__aexit__(None, None, None)
        finally:
            watchdog.cancel()


async def _report_a_slow_stop(after: float) -> None:
    """Print every task's stack when a stop takes longer than it should: a stop that times
    out is otherwise a bare TimeoutError that says nothing about what held it."""
    await asyncio.sleep(after)
    print(f"--- the notificator has not stopped after {after} s; its tasks:", file=sys.stderr)
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)


def monitor_created(
    tenant: str = "acme",
    monitor_id: uuid.UUID | None = None,
    tags: list[str] | None = None,
    parent_id: uuid.UUID | None = None,
) -> Envelope:
    monitor_id = monitor_id or uuid.uuid4()
    return Envelope.wrap(
        MonitorCreated(
            monitor_id=monitor_id,
            name=f"api-{str(monitor_id)[:4]}",
            type="http",
            target="https://api.example.com/health",
            tags=tags or [],
            interval_seconds=30,
            parent_id=parent_id,
        ),
        producer="pinger",
        tenant=tenant,
    )


def status_changed(
    monitor_id: uuid.UUID,
    previous: Status,
    current: Status,
    at: datetime | None = None,
    tenant: str = "acme",
) -> Envelope:
    return Envelope.wrap(
        MonitorStatusChanged(
            monitor_id=monitor_id,
            previous=previous,
            current=current,
            changed_at=at or datetime.now(UTC),
            error_message="connection refused" if current is Status.DOWN else None,
        ),
        producer="pinger",
        tenant=tenant,
    )


def monitor_id_of(envelope: Envelope) -> uuid.UUID:
    return uuid.UUID(envelope.payload["monitor_id"])


async def eventually_async(
    predicate: Callable[[], Awaitable[bool]], *, timeout: float = 10.0, interval: float = 0.02
) -> None:
    """Like `eventually`, for a predicate that has to await (an API call, a query)."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(interval)


async def eventually(
    predicate: Callable[[], bool], *, timeout: float = 10.0, interval: float = 0.02
) -> None:
    """Wait until `predicate()` holds, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(interval)


async def setup_webhook_rule(
    client: httpx.AsyncClient, url: str, *, events: list[str] | None = None, **rule: Any
) -> tuple[str, str]:
    """Create a signed webhook channel and an "all monitors" rule to it; (channel id, rule id)."""
    channel = await client.post(
        "/api/v1/channels",
        json={"name": "ops hook", "type": "webhook", "settings": {"url": url, "secret": SECRET}},
    )
    assert channel.status_code == 201, channel.text
    created = await client.post(
        "/api/v1/rules",
        json={
            "name": "everything",
            "events": events or ["down", "recovered"],
            "channel_ids": [channel.json()["id"]],
            **rule,
        },
    )
    assert created.status_code == 201, created.text
    return channel.json()["id"], created.json()["id"]


@pytest.fixture
def start_webhooked(start_notificator: Start, make_receiver: MakeReceiver) -> StartWebhooked:
    """Most tests' set-up: a receiver (made with `receiver`'s options), a Notificator (with
    `settings` overridden) and a signed webhook channel with a rule (`rule`) to it."""

    async def start(
        database_url: str,
        *,
        receiver: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
        **rule: Any,
    ) -> tuple[Running, Receiver]:
        hook = await make_receiver(**(receiver or {}))
        running = await start_notificator(database_url, **(settings or {}))
        hook.channel_id, hook.rule_id = await setup_webhook_rule(running.client, hook.url, **rule)
        return running, hook

    return start


def spare_worker(running: Running, **kwargs: Any) -> DeliveryWorker:
    """A second delivery worker on the running one's database, as another replica's would be."""
    component = running.component
    return DeliveryWorker(
        component.sessions,
        component.box,
        component.outbox,
        max_attempts=4,
        backoff_seconds=0.05,
        allow_private=True,
        **kwargs,
    )
