"""The composition root: builds the process for the embedded mode (every service, one process,
SQLite and the in-process bus) or for one role of the distributed mode (PostgreSQL, RabbitMQ)."""

from __future__ import annotations

import secrets

from fastapi import FastAPI

from pingtower.common.messaging.bus import Bus
from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.oidc import authenticator_from_settings
from pingtower.common.runtime import build_app
from pingtower.common.security import Authenticator, FirstOf, Principal, TokenAuthenticator
from pingtower.common.settings import Settings, SettingsError
from pingtower.identity.service import IdentityComponent, identity_authenticator
from pingtower.roles import ROLES, STATELESS_ROLES, all_components, components_for
from pingtower.web.service import build as build_web

DEFAULT_WORKSPACE = "default"
CHECK_RESULTS_LINGER_SECONDS = 0.25


def admin_token(settings: Settings) -> str:
    """The bootstrap admin token: from the settings, or generated once into the data dir."""
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value()
    path = settings.data_dir / "admin-token"
    if path.exists():
        return path.read_text().strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return token


def _authenticator(settings: Settings, token: str | None) -> Authenticator:
    """Keycloak tokens when an issuer is configured, and the bootstrap admin token if any."""
    principal = Principal("admin", DEFAULT_WORKSPACE, frozenset({"admin"}))
    bootstrap = TokenAuthenticator({token: principal}) if token else None
    return authenticator_from_settings(settings, bootstrap)


def create_embedded_app(settings: Settings) -> FastAPI:
    bus = InProcessBus(
        delivery_limit=settings.delivery_limit,
        # Check results are most of the traffic, and each consumer's cost is mostly per batch
        # (statements, a transaction): a longer wait gives batches about five times larger
        # (bench/README.md, performance round 3). Status changes and incidents keep the
        # default 50 ms, and bring a lingering batch forward, so that alerts stay fast.
        linger_by_type={"check.completed": CHECK_RESULTS_LINGER_SECONDS},
    )
    # The built-in login (users, sessions, API keys) exists only in the embedded mode; the
    # distributed mode takes its identities from Keycloak.
    identity = IdentityComponent(settings)
    app = build_app(
        "PingTower",
        [identity, *all_components(settings, bus), *build_web(settings, bus, ("web",))],
        bus,
        FirstOf(
            [identity_authenticator(identity), _authenticator(settings, admin_token(settings))]
        ),
        description="PingTower's public API: Pinger, Notificator and Statistics in one process.",
        settings=settings,
    )
    app.state.bus = bus
    app.state.identity = identity
    return app


def rabbitmq_bus(settings: Settings) -> Bus:
    from pingtower.common.messaging.rabbitmq import RabbitMQBus

    assert settings.broker_url is not None
    return RabbitMQBus(
        settings.broker_url,
        namespace=settings.broker_namespace,
        delivery_limit=settings.delivery_limit,
        prefetch=settings.prefetch,
    )


def create_role_app(settings: Settings, role: str) -> FastAPI:
    if role not in ROLES:
        raise SettingsError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    if settings.broker_url is None:
        raise SettingsError("the distributed mode needs PINGTOWER_BROKER_URL (RabbitMQ)")
    if settings.admin_token is None and settings.oidc_issuer is None:
        raise SettingsError(
            "the distributed mode needs PINGTOWER_OIDC_ISSUER (Keycloak) or PINGTOWER_ADMIN_TOKEN"
        )
    service, _ = ROLES[role]
    if role not in STATELESS_ROLES and settings.database_url(service).startswith("sqlite"):  # type: ignore[arg-type]
        raise SettingsError(
            f"the distributed mode needs PINGTOWER_{service.upper()}_DATABASE_URL (PostgreSQL)"
        )
    bus = rabbitmq_bus(settings)
    app = build_app(
        f"PingTower {role}",
        components_for(role, settings, bus),
        bus,
        _authenticator(
            settings, settings.admin_token.get_secret_value() if settings.admin_token else None
        ),
        settings=settings,
    )
    app.state.bus = bus
    return app
