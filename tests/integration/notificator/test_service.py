"""The service contract: build() for the notificator role, readiness, a clear key error."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.runtime import build_app
from pingtower.common.security import SingleWorkspaceAuthenticator
from pingtower.common.settings import Settings
from pingtower.notificator.secrets import SecretKeyError
from pingtower.notificator.service import NotificatorComponent, build


async def test_the_notificator_role_builds_one_component_that_becomes_ready(
    tmp_path: Path, database_url: str
) -> None:
    settings = Settings(data_dir=tmp_path, notificator_database_url=database_url)
    bus = InProcessBus()
    components = build(settings, bus, {"notificator"})
    assert [type(c) for c in components] == [NotificatorComponent]
    app = build_app("notificator", components, bus, SingleWorkspaceAuthenticator())
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["checks"]["notificator-database"] == "ok"
            spec = (await client.get("/api/v1/openapi.json")).json()
            for path in ("/api/v1/channels", "/api/v1/rules", "/api/v1/silences",
                         "/api/v1/alerts", "/api/v1/notifications"):  # fmt: skip
                assert path in spec["paths"]


def test_no_roles_build_nothing_and_unknown_roles_are_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert build(settings, InProcessBus(), set()) == []
    with pytest.raises(ValueError, match="unknown notificator roles"):
        build(settings, InProcessBus(), {"pinger-api"})


def test_the_distributed_mode_without_a_secret_key_stops_with_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PINGTOWER_SECRET_KEY", raising=False)
    settings = Settings(data_dir=tmp_path, broker_url="amqp://guest:guest@127.0.0.1:5672/")
    with pytest.raises(SecretKeyError, match="PINGTOWER_SECRET_KEY"):
        build(settings, InProcessBus(), {"notificator"})
