"""A pretend identity provider for unit tests: real keys, real signatures, no network.

It answers the discovery and JWKS documents through the `fetch` hook of JwksCache, counts the
requests, can rotate keys, and can be taken "down"."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "http://idp.test/realms/pingtower"
AUDIENCE = "pingtower-api"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_jwk(kid: str, key: PrivateKey) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        jwk["alg"] = "RS256"
    else:
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        jwk["alg"] = "ES256"
    jwk.update(kid=kid, use="sig")
    return jwk


class FakeIssuer:
    def __init__(self) -> None:
        self.keys: dict[str, PrivateKey] = {}
        self.requests: list[str] = []
        self.down = False
        self.discovery_issuer = ISSUER
        self.extra_jwks: list[dict[str, Any]] = []  # published beside the signing keys

    def add_key(self, key: PrivateKey | None = None, kid: str | None = None) -> str:
        kid = kid or uuid.uuid4().hex
        self.keys[kid] = key if key is not None else rsa_key()
        return kid

    async def fetch(self, url: str) -> Mapping[str, Any]:
        self.requests.append(url)
        if self.down:
            raise ConnectionError("identity provider unreachable")
        if url == f"{ISSUER}/.well-known/openid-configuration":
            return {
                "issuer": self.discovery_issuer,
                "jwks_uri": f"{ISSUER}/protocol/openid-connect/certs",
            }
        if url == f"{ISSUER}/protocol/openid-connect/certs":
            keys = [public_jwk(kid, key) for kid, key in self.keys.items()]
            return {"keys": keys + self.extra_jwks}
        raise LookupError(url)

    @property
    def jwks_fetches(self) -> int:
        return sum(url.endswith("/certs") for url in self.requests)

    def token(self, kid: str, **overrides: Any) -> str:
        """A signed access token like Keycloak's; `None` in overrides removes a claim."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": [AUDIENCE, "account"],
            "sub": "user-1",
            "typ": "Bearer",
            "iat": now,
            "exp": now + 300,
            "azp": "pingtower-cli",
            "realm_access": {"roles": ["offline_access", "editor"]},
            "workspace": "acme",
        }
        claims.update(overrides)
        claims = {name: value for name, value in claims.items() if value is not None}
        key = self.keys[kid]
        alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})
