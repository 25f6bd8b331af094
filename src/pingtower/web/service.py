"""Wires the web dashboard into a process (role "web")."""

from __future__ import annotations

from collections.abc import Collection

from pingtower.common.messaging.bus import Bus
from pingtower.common.runtime import Component
from pingtower.common.settings import Settings
from pingtower.web.component import WebUi
from pingtower.web.domain.login import LoginConfig

ROLES = ("web",)


def build(settings: Settings, bus: Bus, roles: Collection[str]) -> list[Component]:
    if "web" not in roles:
        return []
    login = LoginConfig.from_settings(
        issuer=settings.oidc_issuer,
        browser_issuer=settings.oidc_browser_issuer,
        client_id=settings.oidc_web_client_id,
        scopes=settings.oidc_web_scopes,
        api_client=settings.oidc_audience,
        workspace_claim=settings.oidc_workspace_claim,
    )
    return [WebUi(bus, login=login)]
