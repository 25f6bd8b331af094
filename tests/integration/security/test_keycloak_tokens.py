"""Real Keycloak tokens, verified locally by pingtower.common.oidc."""

from __future__ import annotations

import uuid

import jwt
import pytest

from pingtower.common.oidc import (
    AccessTokenVerifier,
    InvalidToken,
    JwksCache,
    KeycloakAuthenticator,
    TokenNotPermitted,
    keycloak_authenticator,
)
from pingtower.common.settings import Settings

from .keycloak import Keycloak, RealmAdmin


@pytest.fixture
def keycloak(keycloak_url: str) -> Keycloak:
    return Keycloak.from_url(keycloak_url)


def authenticator(keycloak: Keycloak) -> KeycloakAuthenticator:
    return keycloak_authenticator(Settings(oidc_issuer=keycloak.issuer()))


@pytest.mark.parametrize(
    ("username", "workspace", "role"),
    [
        ("alice-admin", "acme", "admin"),
        ("bob-editor", "acme", "editor"),
        ("carol-viewer", "acme", "viewer"),
        ("dave-admin", "globex", "admin"),
    ],
)
async def test_demo_user_token_gives_their_workspace_and_role(
    keycloak: Keycloak, username: str, workspace: str, role: str
) -> None:
    token = await keycloak.user_token(username)
    principal = await authenticator(keycloak).verifier.verify(token)
    assert principal.tenant == workspace
    assert principal.roles == frozenset({role})
    assert principal.subject == jwt.decode(token, options={"verify_signature": False})["sub"]


async def test_automation_service_account_is_an_editor_of_acme(keycloak: Keycloak) -> None:
    principal = await authenticator(keycloak).verifier.verify(await keycloak.automation_token())
    assert principal.tenant == "acme"
    assert principal.roles == frozenset({"editor"})
    assert principal.has("viewer")
    assert not principal.has("admin")


async def test_user_in_no_workspace_is_not_permitted(keycloak: Keycloak) -> None:
    token = await keycloak.user_token("erin-noworkspace")
    with pytest.raises(TokenNotPermitted, match="workspace"):
        await authenticator(keycloak).verifier.verify(token)


async def test_token_from_another_realm_is_refused(keycloak: Keycloak) -> None:
    token = await keycloak.master_admin_token()
    with pytest.raises(InvalidToken):
        await authenticator(keycloak).verifier.verify(token)


async def test_token_of_a_client_without_the_api_audience_is_refused(keycloak: Keycloak) -> None:
    # admin-cli exists in every realm and has no audience mapper for pingtower-api.
    token = await keycloak.user_token("bob-editor", client_id="admin-cli")
    with pytest.raises(InvalidToken):
        await authenticator(keycloak).verifier.verify(token)


async def test_keycloak_token_past_its_expiry_is_refused(keycloak: Keycloak) -> None:
    token = await keycloak.user_token("bob-editor")
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    keys = JwksCache(keycloak.issuer())
    now = AccessTokenVerifier(keys, audience="pingtower-api", leeway=0)
    later = AccessTokenVerifier(keys, audience="pingtower-api", leeway=0, clock=lambda: exp + 1)
    assert (await now.verify(token)).tenant == "acme"
    with pytest.raises(InvalidToken, match="expired"):
        await later.verify(token)


async def test_tampered_keycloak_token_is_refused(keycloak: Keycloak) -> None:
    viewer = await keycloak.user_token("carol-viewer")
    admin = await keycloak.user_token("alice-admin")
    # carol's header and signature around alice's claims
    header, _, signature = viewer.split(".")
    forged = f"{header}.{admin.split('.')[1]}.{signature}"
    with pytest.raises(InvalidToken):
        await authenticator(keycloak).verifier.verify(forged)


async def test_keys_are_fetched_once_for_many_tokens(keycloak: Keycloak) -> None:
    verifier = authenticator(keycloak).verifier
    for username in ("alice-admin", "bob-editor", "carol-viewer", "dave-admin"):
        await verifier.verify(await keycloak.user_token(username))
    await verifier.verify(await keycloak.automation_token())
    assert verifier.keys.fetches == 1


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_rotated_realm_key_is_accepted_without_restart(keycloak: Keycloak) -> None:
    clock = Clock()
    keys = JwksCache(keycloak.issuer(), clock=clock)
    verifier = AccessTokenVerifier(keys, audience="pingtower-api")
    before = await keycloak.user_token("bob-editor")
    await verifier.verify(before)
    admin = RealmAdmin(keycloak, await keycloak.master_admin_token())
    component = await admin.add_signing_key(f"rotation-test-{uuid.uuid4().hex[:8]}", 10_000)
    try:
        after = await keycloak.user_token("bob-editor")
        assert jwt.get_unverified_header(after)["kid"] != jwt.get_unverified_header(before)["kid"]
        # Within the refetch interval the new key is not fetched yet...
        with pytest.raises(InvalidToken):
            await verifier.verify(after)
        # ...and after it, it is: no restart, one more fetch.
        clock.now += 31
        assert (await verifier.verify(after)).tenant == "acme"
        assert keys.fetches == 2
        assert (await verifier.verify(before)).tenant == "acme"  # the old key is still published
    finally:
        await admin.remove_component(component)
