"""Wires the Pinger's roles into components: the one place that knows them all."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from fastapi import APIRouter

from pingtower.common.messaging.bus import Bus
from pingtower.common.runtime import Component
from pingtower.common.settings import Settings
from pingtower.pinger.api.heartbeat import heartbeat_router
from pingtower.pinger.api.maintenance import maintenance_router
from pingtower.pinger.api.routes import monitors_router
from pingtower.pinger.checks.base import load_builtin_checks
from pingtower.pinger.evaluator.evaluator import Evaluator
from pingtower.pinger.probe.probe import Probe
from pingtower.pinger.scheduler.scheduler import Scheduler
from pingtower.pinger.store.database import PingerDatabase

ROLES = ("pinger-api", "scheduler", "probe", "evaluator")


class PingerApi(Component):
    name = "pinger-api"

    def __init__(self, db: PingerDatabase, bus: Bus, settings: Settings) -> None:
        self._routers = [monitors_router(db, bus, settings), maintenance_router(db)]
        # Healthchecks-compatible URLs live at /ping/<uuid>, outside the versioned API.
        self._root_routers = [heartbeat_router(db)]

    @property
    def routers(self) -> Sequence[APIRouter]:
        return self._routers

    @property
    def root_routers(self) -> Sequence[APIRouter]:
        return self._root_routers


def build(settings: Settings, bus: Bus, roles: Collection[str]) -> list[Component]:
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown pinger roles: {', '.join(sorted(unknown))}")
    load_builtin_checks()
    components: list[Component] = []
    if {"pinger-api", "scheduler", "evaluator"} & set(roles):
        # One engine and one outbox relay for every role of this process that needs them.
        db = PingerDatabase(settings, bus)
        components.append(db)
        if "pinger-api" in roles:
            components.append(PingerApi(db, bus, settings))
        if "scheduler" in roles:
            components.append(Scheduler(db, bus))
        if "evaluator" in roles:
            components.append(Evaluator(db, bus, settings))
    if "probe" in roles:
        components.append(Probe(bus, settings))
    return components
