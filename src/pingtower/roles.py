"""Which components make up each role a process can run, in either mode."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection
from pathlib import Path

from pingtower.common.messaging.bus import Bus
from pingtower.common.runtime import Component
from pingtower.common.settings import SERVICES, ServiceName, Settings

PINGER_ROLES = ("pinger-api", "scheduler", "probe", "evaluator")

# role name -> (package, the roles of that package it runs)
ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "pinger": ("pinger", PINGER_ROLES),
    **{role: ("pinger", (role,)) for role in PINGER_ROLES},
    "notificator": ("notificator", ("notificator",)),
    "statistics": ("statistics", ("statistics",)),
    # The dashboard: static pages and the live event stream; it owns no database.
    "web": ("web", ("web",)),
}
# Roles that run without a database of their own.
STATELESS_ROLES = frozenset({"probe", "web"})

Builder = Callable[[Settings, Bus, Collection[str]], list[Component]]


def builder(service: str) -> Builder:
    module = importlib.import_module(f"pingtower.{service}.service")
    build: Builder = module.build
    return build


def components_for(role: str, settings: Settings, bus: Bus) -> list[Component]:
    service, service_roles = ROLES[role]
    return builder(service)(settings, bus, service_roles)


def all_components(settings: Settings, bus: Bus) -> list[Component]:
    """Every service with all of its roles: the embedded process."""
    return [
        component
        for service in SERVICES
        for component in builder(service)(settings, bus, ROLES[service][1])
    ]


def migrations_dir(service: ServiceName) -> Path:
    package = importlib.import_module(f"pingtower.{service}")
    assert package.__file__ is not None
    return Path(package.__file__).parent / "migrations"
