"""The settings that turn Keycloak on, and the authenticator they give."""

from __future__ import annotations

import uuid

import pytest

from pingtower.common.oidc import KeycloakAuthenticator, authenticator_from_settings
from pingtower.common.security import (
    ApiKey,
    ApiKeyAuthenticator,
    FirstOf,
    Principal,
    TokenAuthenticator,
)
from pingtower.common.settings import Settings, SettingsError, load_settings

from .issuer import ISSUER

BOOTSTRAP = "bootstrap-admin-token-0123456789abcdef"


async def test_settings_without_issuer_give_only_the_bootstrap_token() -> None:
    bootstrap = TokenAuthenticator({BOOTSTRAP: Principal("admin", "default", frozenset({"admin"}))})
    combined = authenticator_from_settings(Settings(), bootstrap)
    assert isinstance(combined, FirstOf)
    assert combined.authenticators == (bootstrap,)


async def test_settings_with_issuer_put_keycloak_first() -> None:
    bootstrap = TokenAuthenticator({})
    settings = Settings(oidc_issuer=ISSUER + "/", oidc_audience="api", oidc_workspace_claim="ws")
    combined = authenticator_from_settings(settings, bootstrap)
    assert isinstance(combined, FirstOf)
    keycloak, second = combined.authenticators
    assert isinstance(keycloak, KeycloakAuthenticator)
    assert second is bootstrap
    assert keycloak.verifier.issuer == ISSUER
    assert keycloak.verifier.audience == "api"
    assert keycloak.verifier.workspace_claim == "ws"


def test_issuer_setting_must_be_a_web_address() -> None:
    with pytest.raises(SettingsError, match="PINGTOWER_OIDC_ISSUER"):
        load_settings(oidc_issuer="keycloak:8080/realms/pingtower")
    assert load_settings(oidc_issuer=ISSUER + "/").oidc_issuer == ISSUER


def test_issuer_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PINGTOWER_OIDC_ISSUER", ISSUER)
    monkeypatch.setenv("PINGTOWER_OIDC_WORKSPACE_CLAIM", "tenant")
    settings = Settings()
    assert (settings.oidc_issuer, settings.oidc_audience) == (ISSUER, "pingtower-api")
    assert settings.oidc_workspace_claim == "tenant"


def test_api_keys_come_between_keycloak_and_the_bootstrap_token() -> None:
    class NoKeys:
        async def get(self, key_id: uuid.UUID) -> ApiKey | None:
            return None

    bootstrap = TokenAuthenticator({})
    combined = authenticator_from_settings(
        Settings(oidc_issuer=ISSUER), bootstrap, api_keys=NoKeys()
    )
    assert isinstance(combined, FirstOf)
    kinds = [type(authenticator) for authenticator in combined.authenticators]
    assert kinds == [KeycloakAuthenticator, ApiKeyAuthenticator, TokenAuthenticator]
