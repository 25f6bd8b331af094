"""Which login the dashboard uses, and the Content-Security-Policy that lets it work.

Embedded mode (no identity provider configured): PingTower's own login form. With an OIDC
issuer (the distributed mode's Keycloak): the browser logs in at the issuer itself with the
authorization code flow and PKCE, so the page must be allowed to call the issuer's token
endpoint: its origin, and nothing else, joins `connect-src`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit


@dataclass(frozen=True)
class OidcLogin:
    issuer: str  # as the browser reaches it
    client_id: str
    scopes: str
    # Where the access token keeps what the API reads (common/oidc.py), so the page can show
    # only what the caller may do: client roles of `api_client`, the workspace in this claim.
    api_client: str = "pingtower-api"
    workspace_claim: str = "workspace"


@dataclass(frozen=True)
class LoginConfig:
    oidc: OidcLogin | None = None

    @property
    def kind(self) -> Literal["builtin", "oidc"]:
        return "builtin" if self.oidc is None else "oidc"

    @classmethod
    def from_settings(
        cls,
        *,
        issuer: str | None,
        browser_issuer: str | None,
        client_id: str,
        scopes: str,
        api_client: str = "pingtower-api",
        workspace_claim: str = "workspace",
    ) -> LoginConfig:
        """The browser's issuer defaults to the services' one: they are the same address unless
        Keycloak sits behind a name only the browser (or only the services) can resolve."""
        if issuer is None:
            return cls()
        words = scopes.split()
        # The flow is OpenID Connect: without `openid` there is no ID token, so no logout hint.
        if "openid" not in words:
            words.insert(0, "openid")
        return cls(
            OidcLogin(
                (browser_issuer or issuer).rstrip("/"),
                client_id,
                " ".join(words),
                api_client,
                workspace_claim,
            )
        )

    def public(self) -> dict[str, object]:
        """What GET /api/v1/web/config tells the (not yet logged in) browser."""
        if self.oidc is None:
            return {"login": "builtin", "oidc": None}
        return {
            "login": "oidc",
            "oidc": {
                "issuer": self.oidc.issuer,
                "client_id": self.oidc.client_id,
                "scopes": self.oidc.scopes,
                "api_client": self.oidc.api_client,
                "workspace_claim": self.oidc.workspace_claim,
            },
        }

    def connect_sources(self) -> tuple[str, ...]:
        """Origins besides the page's own that the browser may fetch from."""
        if self.oidc is None:
            return ()
        return (origin(self.oidc.issuer),)


def origin(url: str) -> str:
    """scheme://host[:port] of an absolute http(s) URL, the unit a CSP source names."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = {"http": 80, "https": 443}[parts.scheme]
    port = "" if parts.port in (None, default) else f":{parts.port}"
    return f"{parts.scheme}://{host}{port}"


def security_headers(connect_sources: tuple[str, ...] = ()) -> Mapping[str, str]:
    """The shell loads nothing from another origin; the CSP makes a mistake there visible at
    once. Only fetches may leave the origin, and only to the origins named."""
    connect = " ".join(("'self'", *connect_sources))
    return {
        "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
        f"script-src 'self'; connect-src {connect}; frame-ancestors 'none'; base-uri 'none'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }
