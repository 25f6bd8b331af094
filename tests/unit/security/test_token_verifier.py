"""The access-token verifier, against real signatures from locally generated keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from pingtower.common.oidc import (
    AccessTokenVerifier,
    InvalidToken,
    JwksCache,
    KeysUnavailable,
    TokenNotPermitted,
)
from pingtower.common.security import Principal

from .issuer import AUDIENCE, ISSUER, FakeIssuer, ec_key, public_jwk, rsa_key


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_verifier(
    issuer: FakeIssuer, clock: Clock | None = None, **options: Any
) -> AccessTokenVerifier:
    keys = JwksCache(ISSUER, fetch=issuer.fetch, clock=clock or Clock())
    return AccessTokenVerifier(keys, audience=AUDIENCE, **options)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def valid_claims() -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "mallory",
        "typ": "Bearer",
        "exp": now + 300,
        "realm_access": {"roles": ["admin"]},
        "workspace": "acme",
    }


async def test_rs256_access_token_gives_subject_workspace_and_roles() -> None:
    issuer = FakeIssuer()
    kid = issuer.add_key(rsa_key())
    principal = await make_verifier(issuer).verify(issuer.token(kid, sub="bob"))
    assert principal == Principal("bob", "acme", frozenset({"editor"}))


async def test_es256_access_token_is_accepted() -> None:
    issuer = FakeIssuer()
    kid = issuer.add_key(ec_key())
    principal = await make_verifier(issuer).verify(issuer.token(kid))
    assert principal.tenant == "acme"


async def test_expired_token_is_refused() -> None:
    issuer = FakeIssuer()
    kid = issuer.add_key()
    token = issuer.token(kid, exp=int(time.time()) - 31)
    with pytest.raises(InvalidToken, match="expired"):
        await make_verifier(issuer).verify(token)


async def test_token_expired_within_the_leeway_is_still_accepted() -> None:
    issuer = FakeIssuer()
    kid = issuer.add_key()
    token = issuer.token(kid, exp=int(time.time()) - 10)
    assert (await make_verifier(issuer).verify(token)).subject == "user-1"


async def test_expiry_follows_the_verifiers_clock_with_zero_leeway() -> None:
    issuer = FakeIssuer()
    kid = issuer.add_key()
    exp = int(time.time()) + 300
    token = issuer.token(kid, exp=exp)
    keys = JwksCache(ISSUER, fetch=issuer.fetch)
    at_expiry = AccessTokenVerifier(keys, audience=AUDIENCE, leeway=0, clock=lambda: exp)
    after_expiry = AccessTokenVerifier(keys, audience=AUDIENCE, leeway=0, clock=lambda: exp + 1)
    await at_expiry.verify(token)
    with pytest.raises(InvalidToken, match="expired"):
        await after_expiry.verify(token)


async def test_token_not_valid_yet_is_refused() -> None:
    issuer = FakeIssuer()
    kid = issuer.add_key()
    token = issuer.token(kid, nbf=int(time.time()) + 120)
    with pytest.raises(InvalidToken, match="not valid yet"):
        await make_verifier(issuer).verify(token)


async def test_token_from_another_issuer_is_refused() -> None:
    issuer = FakeIssuer()
    kid = issuer.add_key()
    token = issuer.token(kid, iss="http://idp.test/realms/other")
    with pytest.raises(InvalidToken, match="issuer"):
        await make_verifier(issuer).verify(token)


async def test_token_for_another_audience_is_refused() -> None:
    issuer = FakeIssuer()
    kid = issuer.add_key()
    token = issuer.token(kid, aud=["account", "some-other-api"])
    with pytest.raises(InvalidToken, match=r"[Aa]udience"):
        await make_verifier(issuer).verify(token)


async def test_token_without_audience_is_refused() -> None:
    issuer = FakeIssuer()
    kid = issuer.add_key()
    with pytest.raises(InvalidToken):
        await make_verifier(issuer).verify(issuer.token(kid, aud=None))


@pytest.mark.parametrize("typ", ["Refresh", "ID", "Logout", None])
async def test_token_that_is_not_an_access_token_is_refused(typ: str | None) -> None:
    issuer = FakeIssuer()
    kid = issuer.add_key()
    with pytest.raises(InvalidToken, match="not an access token"):
        await make_verifier(issuer).verify(issuer.token(kid, typ=typ))


async def test_tampered_payload_breaks_the_signature() -> None:
    issuer = FakeIssuer()
    kid = issuer.add_key()
    header, _, signature = issuer.token(kid).split(".")
    claims = valid_claims()  # mallory, admin: not what was signed
    forged = f"{header}.{b64(json.dumps(claims).encode())}.{signature}"
    with pytest.raises(InvalidToken, match=r"[Ss]ignature"):
        await make_verifier(issuer).verify(forged)


async def test_unsigned_token_with_alg_none_is_refused() -> None:
    issuer = FakeIssuer()
    kid = issuer.add_key()
    header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    payload = b64(json.dumps(valid_claims()).encode())
    with pytest.raises(InvalidToken, match="algorithm"):
        await make_verifier(issuer).verify(f"{header}.{payload}.")


async def test_hs256_token_signed_with_the_public_key_is_refused() -> None:
    """The algorithm-confusion attack: the attacker knows the public key (it is published) and
    uses it as an HMAC secret, hoping the verifier feeds the same key to HS256."""
    issuer = FakeIssuer()
    private = rsa_key()
    kid = issuer.add_key(private)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = b64(json.dumps(valid_claims()).encode())
    mac = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    with pytest.raises(InvalidToken, match="algorithm"):
        await make_verifier(issuer).verify(f"{header}.{payload}.{b64(mac)}")


async def test_token_whose_alg_does_not_match_its_keys_type_is_refused() -> None:
    issuer = FakeIssuer()
    rsa_kid = issuer.add_key(rsa_key())
    token = jwt.encode(valid_claims(), ec_key(), algorithm="ES256", headers={"kid": rsa_kid})
    with pytest.raises(InvalidToken, match="not a key for ES256"):
        await make_verifier(issuer).verify(token)


def test_symmetric_or_unsigned_algorithms_cannot_be_configured() -> None:
    keys = JwksCache(ISSUER, fetch=FakeIssuer().fetch)
    for unsafe in (["HS256"], ["RS256", "none"]):
        with pytest.raises(ValueError, match="not allowed"):
            AccessTokenVerifier(keys, audience=AUDIENCE, algorithms=unsafe)


async def test_garbage_is_not_a_token() -> None:
    issuer = FakeIssuer()
    issuer.add_key()
    with pytest.raises(InvalidToken, match="not a JWT"):
        await make_verifier(issuer).verify("not.a.jwt")


async def test_unknown_kid_causes_one_refetch_then_is_refused() -> None:
    issuer = FakeIssuer()
    kid = issuer.add_key()
    clock = Clock()
    verifier = make_verifier(issuer, clock)
    await verifier.verify(issuer.token(kid))
    assert issuer.jwks_fetches == 1
    clock.now += 30
    stranger = FakeIssuer()
    stranger_kid = stranger.add_key()
    with pytest.raises(InvalidToken, match="does not publish"):
        await verifier.verify(stranger.token(stranger_kid))
    assert issuer.jwks_fetches == 2


async def test_unknown_kids_refetch_at_most_once_per_interval() -> None:
    issuer = FakeIssuer()
    kid = issuer.add_key()
    clock = Clock()
    verifier = make_verifier(issuer, clock)
    await verifier.verify(issuer.token(kid))
    stranger = FakeIssuer()
    for _ in range(20):
        forged = stranger.token(stranger.add_key(ec_key()))
        with pytest.raises(InvalidToken):
            await verifier.verify(forged)
        clock.now += 1
    # The first fetch was moments ago: none of the twenty forged kids reached the issuer.
    assert issuer.jwks_fetches == 1
    clock.now += 30
    with pytest.raises(InvalidToken):
        await verifier.verify(stranger.token(stranger.add_key()))
    assert issuer.jwks_fetches == 2


async def test_rotated_key_is_accepted_after_a_refetch() -> None:
    issuer = FakeIssuer()
    old = issuer.add_key()
    clock = Clock()
    verifier = make_verifier(issuer, clock)
    await verifier.verify(issuer.token(old))
    new = issuer.add_key(ec_key())
    del issuer.keys[old]
    clock.now += 31
    assert (await verifier.verify(issuer.token(new))).tenant == "acme"
    assert issuer.jwks_fetches == 2


async def test_rotated_key_waits_for_the_refetch_interval() -> None:
    issuer = FakeIssuer()
    old = issuer.add_key()
    clock = Clock()
    verifier = make_verifier(issuer, clock)
    await verifier.verify(issuer.token(old))
    new = issuer.add_key()
    clock.now += 5
    with pytest.raises(InvalidToken):
        await verifier.verify(issuer.token(new))
    clock.now += 25
    await verifier.verify(issuer.token(new))


async def test_cached_keys_keep_verifying_while_the_issuer_is_down() -> None:
    issuer = FakeIssuer()
    kid = issuer.add_key()
    clock = Clock()
    verifier = make_verifier(issuer, clock)
    await verifier.verify(issuer.token(kid))
    issuer.down = True
    clock.now += 3600
    # An unknown kid makes the cache try the issuer, which fails: the known keys stay.
    stranger = FakeIssuer()
    with pytest.raises(InvalidToken):
        await verifier.verify(stranger.token(stranger.add_key()))
    assert issuer.requests[-1].endswith("/certs")
    assert (await verifier.verify(issuer.token(kid, sub="still-in"))).subject == "still-in"


async def test_issuer_never_reached_means_keys_unavailable() -> None:
    issuer = FakeIssuer()
    kid = issuer.add_key()
    issuer.down = True
    with pytest.raises(KeysUnavailable):
        await make_verifier(issuer).verify(issuer.token(kid))


async def test_discovery_is_used_once_and_the_jwks_uri_remembered() -> None:
    issuer = FakeIssuer()
    kid = issuer.add_key()
    clock = Clock()
    verifier = make_verifier(issuer, clock)
    await verifier.verify(issuer.token(kid))
    clock.now += 60
    new = issuer.add_key()
    await verifier.verify(issuer.token(new))
    assert issuer.jwks_fetches == 2
    discoveries = [url for url in issuer.requests if url.endswith("openid-configuration")]
    assert discoveries == [f"{ISSUER}/.well-known/openid-configuration"]


async def test_token_without_workspace_is_not_permitted() -> None:
    issuer = FakeIssuer()
    kid = issuer.add_key()
    with pytest.raises(TokenNotPermitted, match="workspace"):
        await make_verifier(issuer).verify(issuer.token(kid, workspace=None))


async def test_token_in_two_workspaces_is_not_permitted() -> None:
    issuer = FakeIssuer()
    kid = issuer.add_key()
    with pytest.raises(TokenNotPermitted, match="workspace"):
        await make_verifier(issuer).verify(issuer.token(kid, workspace=["acme", "globex"]))


async def test_token_without_a_pingtower_role_is_not_permitted() -> None:
    issuer = FakeIssuer()
    kid = issuer.add_key()
    token = issuer.token(kid, realm_access={"roles": ["offline_access", "uma_authorization"]})
    with pytest.raises(TokenNotPermitted, match="role"):
        await make_verifier(issuer).verify(token)


async def test_client_roles_of_the_api_client_count() -> None:
    issuer = FakeIssuer()
    kid = issuer.add_key()
    token = issuer.token(
        kid,
        realm_access=None,
        resource_access={AUDIENCE: {"roles": ["viewer"]}, "other": {"roles": ["admin"]}},
    )
    assert (await make_verifier(issuer).verify(token)).roles == frozenset({"viewer"})


async def test_workspace_claim_name_is_configurable() -> None:
    issuer = FakeIssuer()
    kid = issuer.add_key()
    token = issuer.token(kid, workspace=None, tenant="/workspaces/globex")
    principal = await make_verifier(issuer, workspace_claim="tenant").verify(token)
    assert principal.tenant == "globex"


async def test_discovery_naming_another_issuer_makes_keys_unavailable() -> None:
    issuer = FakeIssuer()
    kid = issuer.add_key()
    issuer.discovery_issuer = "http://localhost:8080/realms/pingtower"
    with pytest.raises(KeysUnavailable):
        await make_verifier(issuer).verify(issuer.token(kid))


async def test_empty_key_set_does_not_wipe_the_cached_keys() -> None:
    issuer = FakeIssuer()
    kid = issuer.add_key()
    clock = Clock()
    verifier = make_verifier(issuer, clock)
    await verifier.verify(issuer.token(kid))
    saved = dict(issuer.keys)
    issuer.keys.clear()
    clock.now += 60
    stranger = FakeIssuer()
    with pytest.raises(InvalidToken):
        await verifier.verify(stranger.token(stranger.add_key(ec_key())))
    issuer.keys.update(saved)
    await verifier.verify(issuer.token(kid))


async def test_encryption_and_symmetric_keys_in_the_jwks_are_not_used() -> None:
    issuer = FakeIssuer()
    kid = issuer.add_key()
    encryption_key = rsa_key()
    issuer.extra_jwks = [
        {"kid": "hmac", "kty": "oct", "k": b64(b"a-secret-no-jwks-should-hold"), "alg": "HS256"},
        {**public_jwk("enc", encryption_key), "use": "enc"},
    ]
    verifier = make_verifier(issuer)
    await verifier.verify(issuer.token(kid))
    for unusable in ("hmac", "enc"):
        token = jwt.encode(valid_claims(), encryption_key, "RS256", headers={"kid": unusable})
        with pytest.raises(InvalidToken, match="does not publish"):
            await verifier.verify(token)


@pytest.mark.parametrize("header", ["jku", "jwk", "x5u"])
async def test_token_bringing_its_own_key_or_key_url_is_refused(header: str) -> None:
    issuer = FakeIssuer()
    kid = issuer.add_key()
    attacker = ec_key()
    value: object = "https://attacker.example/jwks.json"
    if header == "jwk":
        value = public_jwk(kid, attacker)
    token = jwt.encode(valid_claims(), attacker, "ES256", headers={"kid": kid, header: value})
    with pytest.raises(InvalidToken, match=f"header {header}"):
        await make_verifier(issuer).verify(token)
    assert issuer.requests == []
