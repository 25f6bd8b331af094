"""Wires the web dashboard into a process (role "web")."""

from __future__ import annotations

from collections.abc import Collection

from pingtower.common.messaging.bus import Bus
from pingtower.common.runtime import Component
from pingtower.common.settings import Settings
from pingtower.web.component import WebUi

ROLES = ("web",)


def build(settings: Settings, bus: Bus, roles: Collection[str]) -> list[Component]:
    del settings  # nothing to configure yet: no database, no outbound requests
    return [WebUi(bus)] if "web" in roles else []
