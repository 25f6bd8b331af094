"""The Pinger's database inside one process: one engine, its sessions, the outbox and its relay.

It is a Component of its own, listed before the roles that use it, so that however many of the
API, scheduler and evaluator roles run in a process they share one engine and one relay.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path

from pingtower.common.db import consumer_engine, create_engine, migrate, ping, session_factory
from pingtower.common.http.app import ReadinessCheck
from pingtower.common.messaging.bus import Bus
from pingtower.common.messaging.outbox import Outbox, OutboxRelay
from pingtower.common.runtime import Component
from pingtower.common.settings import Settings
from pingtower.pinger.store import tables

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


class PingerDatabase(Component):
    name = "pinger-database"

    def __init__(self, settings: Settings, bus: Bus) -> None:
        self.url = settings.database_url("pinger")
        self.engine = create_engine(self.url)
        self.sessions = session_factory(self.engine)
        # The evaluator's: on SQLite a connection of its own, whose page cache lasts
        self.evaluator_engine = consumer_engine(self.url, self.engine)
        self.outbox = Outbox(tables.outbox, producer="pinger")
        self.relay = OutboxRelay(
            self.sessions,
            self.outbox,
            bus,
            poll_seconds=settings.outbox_poll_seconds,
            batch=settings.outbox_batch,
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def readiness(self) -> Mapping[str, ReadinessCheck]:
        return {"pinger-database": partial(ping, self.engine)}

    async def prepare(self) -> None:
        await migrate(self.url, MIGRATIONS)

    async def start(self) -> None:
        self.relay.start()

    async def stop(self) -> None:
        await self.relay.stop()
        if self.evaluator_engine is not self.engine:
            await self.evaluator_engine.dispose()
        await self.engine.dispose()
