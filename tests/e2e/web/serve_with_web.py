"""The embedded process with the web dashboard added, for the browser tests, until app.py
composes the WebUi itself. Run: uvicorn tests.e2e.web.serve_with_web:create_app --factory."""

from __future__ import annotations

from fastapi import FastAPI

from pingtower.app import _authenticator, admin_token
from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.runtime import build_app
from pingtower.common.settings import load_settings
from pingtower.roles import all_components
from pingtower.web.service import build as build_web


def create_app() -> FastAPI:
    settings = load_settings()
    bus = InProcessBus(delivery_limit=settings.delivery_limit)
    components = [*all_components(settings, bus), *build_web(settings, bus, ["web"])]
    app = build_app("PingTower", components, bus, _authenticator(settings, admin_token(settings)))
    app.state.bus = bus
    return app
