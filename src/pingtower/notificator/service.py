"""The one place that wires the Notificator: database, consumer, outbox relay, delivery worker
and API, as one Component (role "notificator")."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import structlog
from fastapi import APIRouter

from pingtower.common.db import create_engine, migrate, ping, session_factory
from pingtower.common.events import utcnow
from pingtower.common.http.app import ReadinessCheck
from pingtower.common.messaging.bus import Bus
from pingtower.common.messaging.inbox import Inbox
from pingtower.common.messaging.outbox import Outbox, OutboxRelay
from pingtower.common.runtime import Component
from pingtower.common.settings import Settings
from pingtower.common.waiting import woken
from pingtower.notificator.api.alerts import alerts_router
from pingtower.notificator.api.channels import channels_router
from pingtower.notificator.api.deps import ApiDeps
from pingtower.notificator.api.notifications import notifications_router
from pingtower.notificator.api.rules import rules_router
from pingtower.notificator.api.silences import silences_router
from pingtower.notificator.consumer import (
    CONSUMER,
    ROUTING_KEYS,
    EventEffects,
    close_quiet_flapping_alerts,
    prune_channel_sends,
    skip_unwanted_check_results,
)
from pingtower.notificator.delivery.worker import DeliveryWorker
from pingtower.notificator.secrets import SecretBox, load_key
from pingtower.notificator.store import tables

log = structlog.get_logger(__name__)
ROLES = frozenset({"notificator"})
MIGRATIONS = Path(__file__).parent / "migrations"
# Events per batch at most: every check result arrives here, one consumer takes the batches in
# turn, and each costs a read at least (`skip_unwanted_check_results`) whose wait for the
# database thread and the event loop outweighs its CPU. With batches of 100, 40,000 monitors
# every 20 s (2,000 results a second) found it at 1,760 a second (bench/README.md, round 10),
# as the evaluator had been. A batch holds only what is waiting or arrives while the bus
# lingers; status changes keep their short linger, so alerts do not wait for a larger batch.
MAX_BATCH = 500


class NotificatorComponent(Component):
    name = "notificator"

    def __init__(
        self,
        settings: Settings,
        bus: Bus,
        *,
        worker_poll_seconds: float | None = None,
        worker_id: str | None = None,
        housekeeping_seconds: float = 5.0,
    ) -> None:
        self.housekeeping_seconds = housekeeping_seconds
        self._housekeeping: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.settings = settings
        self.bus = bus
        # First: a missing key in the distributed mode must stop the process before anything.
        self.box = SecretBox(load_key(settings))
        self.url = settings.database_url("notificator")
        self.engine = create_engine(self.url)
        self.sessions = session_factory(self.engine)
        self.outbox = Outbox(tables.outbox, producer="notificator")
        self.inbox = Inbox(tables.inbox, consumer=CONSUMER)
        self.relay = OutboxRelay(
            self.sessions,
            self.outbox,
            bus,
            poll_seconds=settings.outbox_poll_seconds,
            batch=settings.outbox_batch,
        )
        # A fresh decision wakes the worker at once, and the worker waits no longer than the
        # next waiting message's due time; polling remains for what other replicas queue.
        poll = worker_poll_seconds or min(1.0, max(0.05, settings.delivery_backoff_seconds / 2))
        self.worker = DeliveryWorker(
            self.sessions,
            self.box,
            self.outbox,
            max_attempts=settings.delivery_max_attempts,
            backoff_seconds=settings.delivery_backoff_seconds,
            allow_private=settings.allow_private_targets,
            allow_networks=settings.egress_allow_networks,
            poll_seconds=poll,
            window=settings.delivery_channel_concurrency,
            worker_id=worker_id,
        )
        self.effects = EventEffects(public_url=settings.public_url, on_queued=self.worker.wake)
        deps = ApiDeps(self.sessions, self.box, settings)
        self._routers = [
            channels_router(deps),
            rules_router(deps),
            silences_router(deps),
            alerts_router(deps),
            notifications_router(deps),
        ]

    @property
    def routers(self) -> Sequence[APIRouter]:
        return self._routers

    @property
    def readiness(self) -> Mapping[str, ReadinessCheck]:
        async def database() -> None:
            await ping(self.engine)

        return {"notificator-database": database}

    async def prepare(self) -> None:
        await migrate(self.url, MIGRATIONS)
        self.bus.subscribe(
            CONSUMER,
            list(ROUTING_KEYS),
            skip_unwanted_check_results(
                self.sessions, self.inbox.handler(self.sessions, self.effects)
            ),
            max_batch=MAX_BATCH,
        )

    async def start(self) -> None:
        self.relay.start()
        self.worker.start()
        self._stopping.clear()
        self._housekeeping = asyncio.create_task(self._housekeep(), name="notificator-housekeeping")

    async def stop(self) -> None:
        if self._housekeeping is not None:
            self._stopping.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._housekeeping), 10)
            except TimeoutError:
                self._housekeeping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._housekeeping
            self._housekeeping = None
        await self.worker.stop()
        await self.relay.stop()
        await self.engine.dispose()

    async def _housekeep(self) -> None:
        """Periodic chores: close flapping alerts that calmed down, prune the inbox."""
        rounds = 0
        while not self._stopping.is_set():
            try:
                async with self.sessions() as session, session.begin():
                    await close_quiet_flapping_alerts(session, utcnow())
                    await prune_channel_sends(session, utcnow())
                    if rounds % 720 == 0:
                        await self.inbox.prune(session)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("notificator housekeeping failed; retrying")
            rounds += 1
            await woken(self._stopping, self.housekeeping_seconds)


def build(settings: Settings, bus: Bus, roles: Collection[str]) -> list[Component]:
    unknown = set(roles) - ROLES
    if unknown:
        raise ValueError(f"unknown notificator roles: {', '.join(sorted(unknown))}")
    if not roles:
        return []
    return [NotificatorComponent(settings, bus)]
