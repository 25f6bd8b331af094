"""Typed settings, read from the environment (prefix ``PINGTOWER_``) and validated at start-up.

Every field carries its documentation; ``pingtower settings`` prints them. A bad value stops the
process with a message that names the variable, instead of failing later somewhere deep.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ServiceName = Literal["pinger", "notificator", "statistics"]
SERVICES: tuple[ServiceName, ...] = ("pinger", "notificator", "statistics")


class Mode(StrEnum):
    EMBEDDED = "embedded"
    DISTRIBUTED = "distributed"


class SettingsError(Exception):
    """Raised with a human-readable list of every setting that is wrong."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PINGTOWER_", extra="ignore", validate_default=True
    )

    data_dir: Path = Field(
        Path("./data"),
        description="Where the embedded mode keeps its SQLite files (one per service).",
    )
    pinger_database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the Pinger's database "
        "(postgresql+asyncpg://... or sqlite+aiosqlite:///...). Default: SQLite in data_dir.",
    )
    notificator_database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the Notificator's database. Default: SQLite in data_dir.",
    )
    statistics_database_url: str | None = Field(
        None, description="SQLAlchemy URL of the Statistics database. Default: SQLite in data_dir."
    )
    broker_url: str | None = Field(
        None,
        description="RabbitMQ URL (amqp://user:pass@host:5672/vhost). Unset: the in-process bus.",
    )
    broker_namespace: str = Field(
        "pingtower",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Prefix of every exchange and queue name, so several installations can "
        "share one RabbitMQ virtual host.",
    )
    region: str = Field("default", description="Region of this probe; it consumes that job queue.")
    delivery_limit: int = Field(
        5, ge=1, le=100, description="Deliveries of one message before it is dead-lettered."
    )
    prefetch: int = Field(64, ge=1, le=10_000, description="Unacknowledged messages per consumer.")
    outbox_poll_seconds: float = Field(
        0.5, gt=0, le=60, description="How often the outbox relay looks for unsent events."
    )
    outbox_batch: int = Field(500, ge=1, le=10_000, description="Outbox rows published per batch.")
    host: str = Field("127.0.0.1", description="Address the HTTP server listens on.")
    port: int = Field(8000, ge=0, le=65535, description="Port the HTTP server listens on.")
    public_url: str | None = Field(
        None, description="Address users reach PingTower at, for links in notifications."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level that is logged."
    )
    log_json: bool = Field(True, description="Log one JSON object per line (false: console).")
    min_interval_seconds: int = Field(
        10, ge=1, le=86_400, description="Smallest check interval a monitor may ask for."
    )
    probe_concurrency: int = Field(
        256, ge=1, le=100_000, description="Checks one probe process runs at the same time."
    )
    probe_per_target_concurrency: int = Field(
        8, ge=1, le=10_000, description="Checks one probe runs against one host at the same time."
    )
    results_retention_hours: int = Field(
        48, ge=1, description="How long the Pinger keeps raw results."
    )
    allow_private_targets: bool = Field(
        False,
        description="Let monitors and webhooks reach loopback and private addresses. Default: "
        "true in the embedded (single-user) mode, false in the distributed mode. Link-local "
        "and cloud metadata addresses are refused either way.",
    )
    egress_allow_networks: Annotated[
        tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...], NoDecode
    ] = Field(
        (),
        description="Networks (CIDR, comma-separated, e.g. 10.20.0.0/16,fd00:1::/64) that "
        "monitors and channels may reach even when PINGTOWER_ALLOW_PRIVATE_TARGETS is off. It "
        "never opens link-local addresses (169.254.0.0/16, fe80::/10: cloud metadata), "
        "unspecified or multicast ones.",
    )
    max_monitors_per_workspace: int = Field(
        10_000,
        ge=0,
        le=10_000_000,
        description="Monitors one workspace may have (409 beyond, also for `pingtower apply`). "
        "0: no limit.",
    )
    max_request_bytes: int = Field(
        1_048_576, ge=1024, le=100 * 1_048_576, description="Largest request body accepted (413)."
    )
    rate_limit_per_minute: int = Field(
        1200,
        ge=0,
        le=1_000_000,
        description="Requests a minute per credential (or per address without one), with "
        "bursts up to that many; 429 with Retry-After beyond. 0 turns the limit off.",
    )
    admin_token: SecretStr | None = Field(
        None,
        min_length=24,
        description="Bearer token that acts as an admin of workspace `default` (bootstrap access "
        "until an identity provider is configured). The embedded mode generates one in data_dir "
        "when unset; the distributed mode requires it.",
    )
    oidc_issuer: str | None = Field(
        None,
        description="Issuer of the access tokens PingTower accepts, exactly as in their `iss` "
        "claim (Keycloak: http://HOST:PORT/realms/pingtower). Its signing keys are fetched from "
        "its discovery document and cached; tokens are verified locally. Unset: no identity "
        "provider, only the bootstrap admin token.",
    )
    oidc_audience: str = Field(
        "pingtower-api",
        description="Audience (`aud`) an access token must name; also the client whose client "
        "roles count as PingTower roles besides the realm roles.",
    )
    oidc_workspace_claim: str = Field(
        "workspace",
        description="Access-token claim holding the caller's workspace (a string, or a list of "
        "exactly one); a token without it is refused with 403.",
    )
    oidc_web_client_id: str = Field(
        "pingtower-web",
        min_length=1,
        description="Public client the dashboard logs in with when an issuer is set "
        "(authorization code flow with PKCE S256, in the browser).",
    )
    oidc_web_scopes: str = Field(
        "openid profile",
        description="Scopes the dashboard asks for, space-separated (`openid` is always added).",
    )
    oidc_browser_issuer: str | None = Field(
        None,
        description="The issuer's address as the browser reaches it, if not `oidc_issuer` "
        "(e.g. services reach Keycloak by an internal name). Its origin is the only other one "
        "the dashboard's Content-Security-Policy lets the page connect to.",
    )
    secret_key: SecretStr | None = Field(
        None,
        min_length=32,
        description="Key that encrypts notification channel secrets at rest. Required in the "
        "distributed mode, the same on every notificator replica; the embedded mode generates "
        "one into data_dir/notificator-secret.key.",
    )
    statistics_raw_retention_days: int = Field(
        30, ge=1, le=3650, description="How long Statistics keeps raw check results."
    )
    statistics_minute_retention_days: int = Field(
        7, ge=1, le=3650, description="How long Statistics keeps minute rollups."
    )
    statistics_hour_retention_days: int = Field(
        90, ge=1, le=3650, description="How long Statistics keeps hour rollups."
    )
    statistics_day_retention_days: int = Field(
        1825, ge=1, le=36500, description="How long Statistics keeps day rollups."
    )
    delivery_max_attempts: int = Field(
        8, ge=1, le=100, description="Attempts to deliver one notification before it fails."
    )
    delivery_backoff_seconds: float = Field(
        2.0, gt=0, le=3600, description="First retry delay; it doubles per attempt, with jitter."
    )
    delivery_channel_concurrency: int = Field(
        8, ge=1, le=64, description="Messages of one notification channel sent at once."
    )
    identity_database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the built-in login's database (users, sessions, API keys) "
        "of the embedded mode. Default: SQLite identity.sqlite3 in data_dir.",
    )
    admin_password: SecretStr | None = Field(
        None,
        min_length=12,
        description="Password of the `admin` user the built-in login creates on first start, in "
        "workspace `default`. Unset: a random one is generated and printed once. Read only on "
        "the first start; change it afterwards through the users API.",
    )
    session_hours: int = Field(
        12,
        ge=1,
        le=24 * 30,
        description="How long a built-in login session (browser cookie or bearer token) lasts.",
    )

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("amqp://", "amqps://")):
            raise ValueError("must start with amqp:// or amqps://")
        return value

    @field_validator(
        "pinger_database_url",
        "notificator_database_url",
        "statistics_database_url",
        "identity_database_url",
    )
    @classmethod
    def _db_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.startswith("postgresql://"):
            value = "postgresql+asyncpg://" + value.removeprefix("postgresql://")
        if not value.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            raise ValueError("must be postgresql+asyncpg://... or sqlite+aiosqlite:///...")
        return value

    @field_validator("oidc_issuer", "oidc_browser_issuer")
    @classmethod
    def _issuer_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be the issuer's http(s):// URL, e.g. .../realms/pingtower")
        return value.rstrip("/")

    @field_validator("egress_allow_networks", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list | tuple):
            return value
        networks = []
        for part in value:
            try:
                networks.append(ipaddress.ip_network(part))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{part!r} is not a network in CIDR form: {exc}") from None
        return tuple(networks)

    @model_validator(mode="after")
    def _mode_defaults(self) -> Settings:
        if "allow_private_targets" not in self.model_fields_set:
            self.allow_private_targets = self.broker_url is None
        return self

    @property
    def mode(self) -> Mode:
        return Mode.EMBEDDED if self.broker_url is None else Mode.DISTRIBUTED

    def database_url(self, service: ServiceName) -> str:
        url: str | None = getattr(self, f"{service}_database_url")
        if url is not None:
            return url
        return f"sqlite+aiosqlite:///{(self.data_dir / f'{service}.sqlite3').resolve()}"


def load_settings(**overrides: object) -> Settings:
    """Read the settings; on a bad value raise SettingsError naming each variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "settings"
            lines.append(f"  PINGTOWER_{field.upper()}: {error['msg']}")
        raise SettingsError("invalid settings:\n" + "\n".join(lines)) from None


def describe_settings() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting, for `pingtower settings`."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = "" if field.default is None else str(field.default)
        rows.append((f"PINGTOWER_{name.upper()}", default, field.description or ""))
    return rows
