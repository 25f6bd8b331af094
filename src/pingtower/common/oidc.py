"""Keycloak (OpenID Connect) access tokens, verified locally: no call to Keycloak per request.

The signing keys come from the issuer's JWKS (found through its discovery document) and are
cached by key id. An unknown key id triggers one refetch, at most once per `refetch_interval`,
so rotated keys are picked up while a flood of forged key ids cannot hammer Keycloak; while
Keycloak is unreachable, the cached keys keep verifying.

What a token must be to pass: signed with RS256 or ES256 (never `none`, never HMAC: an HS256
token "signed" with the public key is the classic confusion attack), issued by the configured
issuer, meant for the API (`aud`), current (`exp`, `nbf`, with a small leeway for clock skew),
and an access token (Keycloak's `typ` claim `Bearer`, not an ID or refresh token).
What it must carry to be let in: a workspace (the claim `workspace`, a string or a list of one)
and at least one PingTower role (realm roles, or client roles of the API client); otherwise the
caller is known but not allowed: 403.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import aiohttp
import jwt
import structlog
from fastapi import Request
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from prometheus_client import Counter

from pingtower.common.http.problems import Problem
from pingtower.common.security import (
    ROLES,
    ApiKeyAuthenticator,
    ApiKeyLookup,
    Authenticator,
    FirstOf,
    Principal,
    TokenAuthenticator,
)
from pingtower.common.settings import Settings

log = structlog.get_logger(__name__)

JWKS_FETCHES = Counter(
    "pingtower_oidc_jwks_fetches_total", "Fetches of the issuer's signing keys.", ["outcome"]
)
TOKENS = Counter(
    "pingtower_oidc_tokens_total",
    "Access tokens checked: accepted, invalid (401), not_permitted (403), keys_unavailable (503).",
    ["outcome"],
)

# Asymmetric algorithms only; anything else (none, HS*) is refused before a key is looked at.
ALLOWED_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256")
DEFAULT_LEEWAY_SECONDS = 30.0
DEFAULT_REFETCH_INTERVAL_SECONDS = 30.0

JsonFetcher = Callable[[str], Awaitable[Mapping[str, Any]]]


class InvalidToken(Exception):
    """The token proves nothing: bad signature, wrong issuer or audience, expired... (401)."""


class TokenNotPermitted(Exception):
    """The token is genuine but does not let its bearer into PingTower (403)."""


class KeysUnavailable(InvalidToken):
    """No key to check the signature with: the issuer has never been reached (503)."""


async def fetch_json(url: str, *, timeout_seconds: float = 5.0) -> Mapping[str, Any]:
    """GET a JSON document. The issuer is configured by the operator, not a user, so this does
    not go through the egress guard (which would refuse a Keycloak on a private address)."""
    timeout = aiohttp.ClientTimeout(total=timeout_seconds)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(url, allow_redirects=False) as response,
    ):
        response.raise_for_status()
        document = await response.json(content_type=None)
    if not isinstance(document, dict):
        raise ValueError(f"{url} did not answer with a JSON object")
    return document


class JwksCache:
    """The issuer's public signing keys by key id, refetched on an unknown id at a bounded rate."""

    def __init__(
        self,
        issuer: str,
        *,
        fetch: JsonFetcher = fetch_json,
        refetch_interval: float = DEFAULT_REFETCH_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self._fetch = fetch
        self._refetch_interval = refetch_interval
        self._clock = clock
        self._keys: dict[str, tuple[str, Any]] = {}  # kid -> (algorithm family, public key)
        self._jwks_uri: str | None = None
        self._last_fetch: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0  # how often the JWKS was fetched; read by tests and metrics

    async def key(self, kid: str) -> tuple[str, Any]:
        """(key type, public key) for a key id; InvalidToken when the issuer does not have it."""
        found = self._keys.get(kid)
        if found is not None:
            return found
        async with self._lock:
            found = self._keys.get(kid)
            if found is None and self._may_refetch():
                await self._refresh()
                found = self._keys.get(kid)
        if found is None:
            if self.fetches == 0:
                raise KeysUnavailable("the issuer's signing keys could not be fetched")
            raise InvalidToken("the token is signed with a key the issuer does not publish")
        return found

    def _may_refetch(self) -> bool:
        return (
            self._last_fetch is None or self._clock() - self._last_fetch >= self._refetch_interval
        )

    async def _refresh(self) -> None:
        self._last_fetch = self._clock()
        try:
            if self._jwks_uri is None:
                discovery = await self._fetch(f"{self.issuer}/.well-known/openid-configuration")
                # A mismatch means a misconfigured issuer URL: say so rather than 401 everyone.
                if discovery.get("issuer") != self.issuer:
                    raise ValueError(
                        f"the discovery document names issuer {discovery.get('issuer')!r}"
                    )
                jwks_uri = discovery.get("jwks_uri")
                if not isinstance(jwks_uri, str):
                    raise ValueError("the discovery document has no jwks_uri")
                self._jwks_uri = jwks_uri
            keys = dict(_parse_jwks(await self._fetch(self._jwks_uri)))
            if not keys:
                raise ValueError("the JWKS holds no usable signing key")
        except Exception as exc:
            # Keycloak down or broken: keep serving the keys we have.
            JWKS_FETCHES.labels(outcome="failed").inc()
            log.warning("jwks fetch failed", issuer=self.issuer, error=str(exc))
            return
        JWKS_FETCHES.labels(outcome="ok").inc()
        self.fetches += 1
        self._keys = keys
        log.info("jwks fetched", issuer=self.issuer, kids=sorted(keys))


def _parse_jwks(jwks: Mapping[str, Any]) -> Iterable[tuple[str, tuple[str, Any]]]:
    """Signing keys (use=sig or unset) of the types we verify; others (encryption keys, HMAC
    secrets that no public JWKS should hold) are ignored."""
    entries = jwks.get("keys")
    if not isinstance(entries, list):
        return
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        if entry.get("use", "sig") != "sig":
            continue
        kty = entry.get("kty")
        try:
            if kty == "RSA":
                yield entry["kid"], ("RSA", RSAAlgorithm.from_jwk(json.dumps(entry)))
            elif kty == "EC":
                yield entry["kid"], ("EC", ECAlgorithm.from_jwk(json.dumps(entry)))
        except (jwt.InvalidKeyError, ValueError, KeyError) as exc:
            log.warning("unusable jwk skipped", kid=entry["kid"], error=str(exc))


_KEY_TYPE = {"RS256": "RSA", "ES256": "EC"}
_WORKSPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_KEY_BEARING_HEADERS = frozenset({"jku", "jwk", "x5u", "x5c"})


class AccessTokenVerifier:
    """Turns a Keycloak access token into a Principal, or says why not."""

    def __init__(
        self,
        keys: JwksCache,
        *,
        audience: str,
        workspace_claim: str = "workspace",
        api_client: str | None = None,
        leeway: float = DEFAULT_LEEWAY_SECONDS,
        algorithms: Sequence[str] = ALLOWED_ALGORITHMS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        unsafe = set(algorithms) - set(_KEY_TYPE)
        if unsafe:
            raise ValueError(f"algorithms not allowed: {sorted(unsafe)}")
        self.keys = keys
        self.issuer = keys.issuer
        self.audience = audience
        self.workspace_claim = workspace_claim
        self.api_client = api_client or audience
        self.leeway = leeway
        self.algorithms = tuple(algorithms)
        self._clock = clock

    async def verify(self, token: str) -> Principal:
        claims = await self.claims(token)
        return self.principal(claims)

    async def claims(self, token: str) -> dict[str, Any]:
        """The verified claims; InvalidToken when anything about the token is wrong."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"not a JWT: {exc}") from None
        # Keys come only from the configured issuer's JWKS: a token naming its own key or key
        # location is an attempt to bring the key along with the forgery.
        smuggled = sorted(_KEY_BEARING_HEADERS & header.keys())
        if smuggled:
            raise InvalidToken(f"header {', '.join(smuggled)} is not accepted")
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise InvalidToken(f"algorithm {alg!r} is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidToken("the token names no key (kid)")
        kty, key = await self.keys.key(kid)
        if kty != _KEY_TYPE[alg]:
            raise InvalidToken(f"key {kid} is not a key for {alg}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                # Time is checked below against our own clock (testable, one leeway rule).
                options={
                    "require": ["exp", "iss", "aud", "sub"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from None
        self._check_times(claims)
        if claims.get("typ") != "Bearer":
            raise InvalidToken(f"a {claims.get('typ')!r} token is not an access token")
        return claims

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self._clock()
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise InvalidToken("exp is not a number")
        if now > exp + self.leeway:
            raise InvalidToken("the token has expired")
        nbf = claims.get("nbf")
        if nbf is not None:
            if not isinstance(nbf, int | float) or isinstance(nbf, bool):
                raise InvalidToken("nbf is not a number")
            if now < nbf - self.leeway:
                raise InvalidToken("the token is not valid yet")

    def principal(self, claims: Mapping[str, Any]) -> Principal:
        """Subject, workspace and PingTower roles; TokenNotPermitted without workspace or role."""
        workspace = workspace_of(claims.get(self.workspace_claim))
        if workspace is None:
            raise TokenNotPermitted(
                f"the token carries no single workspace ({self.workspace_claim})"
            )
        roles = roles_of(claims, self.api_client)
        if not roles:
            raise TokenNotPermitted("the token carries no PingTower role")
        return Principal(subject=str(claims["sub"]), tenant=workspace, roles=roles)


def workspace_of(value: object) -> str | None:
    """The workspace from the claim: a string, or a list holding exactly one. A group path
    (`/workspaces/acme`, from a group-membership mapper with full paths) gives its last part.
    Names are letters, digits, `.`, `_` and `-`, at most 64, starting with a letter or digit."""
    if isinstance(value, list):
        if len(value) != 1:
            return None
        value = value[0]
    if not isinstance(value, str):
        return None
    workspace = value.rsplit("/", 1)[-1]
    # It becomes the tenant of every row the caller touches: keep it a plain, short name.
    return workspace if _WORKSPACE.fullmatch(workspace) else None


def roles_of(claims: Mapping[str, Any], api_client: str) -> frozenset[str]:
    """PingTower roles among the realm roles and the API client's roles; others are ignored."""
    found: set[str] = set()
    realm_access = claims.get("realm_access")
    if isinstance(realm_access, dict):
        found.update(_strings(realm_access.get("roles")))
    resource_access = claims.get("resource_access")
    if isinstance(resource_access, dict):
        client = resource_access.get(api_client)
        if isinstance(client, dict):
            found.update(_strings(client.get("roles")))
    return frozenset(found & set(ROLES))


def _strings(value: object) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


class KeycloakAuthenticator(Authenticator):
    """Callers with a Keycloak access token; a genuine token without workspace or role is 403."""

    def __init__(self, verifier: AccessTokenVerifier) -> None:
        self.verifier = verifier

    async def authenticate(self, request: Request) -> Principal | None:
        token = bearer_token(request)
        if token is None or not looks_like_jwt(token):
            return None  # not ours: another authenticator may know it
        try:
            principal = await self.verifier.verify(token)
        except TokenNotPermitted as exc:
            TOKENS.labels(outcome="not_permitted").inc()
            raise Problem(403, "Forbidden", str(exc)) from None
        except KeysUnavailable as exc:
            # Not the caller's fault: say so instead of a misleading 401.
            TOKENS.labels(outcome="keys_unavailable").inc()
            raise Problem(503, "Service Unavailable", str(exc)) from None
        except InvalidToken as exc:
            TOKENS.labels(outcome="invalid").inc()
            log.info("access token refused", reason=str(exc))
            return None
        TOKENS.labels(outcome="accepted").inc()
        return principal


def keycloak_authenticator(settings: Settings) -> KeycloakAuthenticator:
    if settings.oidc_issuer is None:
        raise ValueError("PINGTOWER_OIDC_ISSUER is not set")
    keys = JwksCache(settings.oidc_issuer)
    verifier = AccessTokenVerifier(
        keys, audience=settings.oidc_audience, workspace_claim=settings.oidc_workspace_claim
    )
    return KeycloakAuthenticator(verifier)


def authenticator_from_settings(
    settings: Settings,
    bootstrap: TokenAuthenticator | None,
    *,
    api_keys: ApiKeyLookup | None = None,
) -> Authenticator:
    """Keycloak tokens when an issuer is configured, then API keys when a store is given, then
    the bootstrap admin token. Each recognises its own credential's shape, so order only
    decides who looks first."""
    authenticators: list[Authenticator] = []
    if settings.oidc_issuer is not None:
        authenticators.append(keycloak_authenticator(settings))
    if api_keys is not None:
        authenticators.append(ApiKeyAuthenticator(api_keys))
    if bootstrap is not None:
        authenticators.append(bootstrap)
    return FirstOf(authenticators)
