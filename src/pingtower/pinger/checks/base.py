"""The interface every check type implements, and the registry that finds one by name.

A check type is one module: a pydantic settings model, a target validator and `run`. It registers
itself with `@register`; nothing else needs to change to add one.
"""

from __future__ import annotations

import abc
import importlib
import ssl
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from pingtower.common.egress import Networks
from pingtower.common.events import CheckJob, Outcome
from pingtower.pinger.domain.monitor import InvalidSettingError


@dataclass
class CheckContext:
    """What a probe shares between checks: its egress policy, which every check type applies to
    each address before it connects, and one TLS context for the checks that make TLS
    connections (building a context loads the trust store, which costs more than a handshake)."""

    allow_private: bool
    tls: ssl.SSLContext = field(default_factory=ssl.create_default_context)
    allow_networks: Networks = ()  # reachable even when private addresses are not
    # True when every job's settings dict is the scheduler's own, shared by its monitor's runs
    # and never changed (the in-process bus hands the probe the scheduler's contract): a check
    # may then key what it derives from the settings by the dict's identity.
    shared_settings: bool = False


@dataclass
class CheckResult:
    outcome: Outcome
    latency_ms: float | None = None
    error_kind: str | None = None
    error_message: str | None = None
    status_code: int | None = None
    size_bytes: int | None = None
    phases_ms: dict[str, float] = field(default_factory=dict)
    cert_expires_at: datetime | None = None

    @classmethod
    def failed(cls, kind: str, message: str, **extra: Any) -> CheckResult:
        return cls(Outcome.DOWN, error_kind=kind, error_message=message[:500], **extra)


class Check(abc.ABC):
    type_name: ClassVar[str]
    settings_model: ClassVar[type[BaseModel]]
    # False for push types (heartbeats): the scheduler publishes no jobs for them.
    scheduled: ClassVar[bool] = True

    def validate(self, target: str, settings: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Normalised (target, settings), or InvalidSettingError naming the field."""
        try:
            model = self.settings_model.model_validate(settings)
        except ValidationError as exc:
            error = exc.errors()[0]
            path = ".".join(str(part) for part in error["loc"])
            raise InvalidSettingError(
                f"settings.{path}" if path else "settings", error["msg"]
            ) from None
        self.check_settings(model)
        return self.validate_target(target), model.model_dump(mode="json")

    def check_settings(self, settings: Any) -> None:  # noqa: B027 - optional hook
        """Cross-field rules beyond the pydantic model."""

    @abc.abstractmethod
    def validate_target(self, target: str) -> str: ...

    @abc.abstractmethod
    async def run(self, job: CheckJob, context: CheckContext) -> CheckResult: ...


REGISTRY: dict[str, Check] = {}


def register(cls: type[Check]) -> type[Check]:
    REGISTRY[cls.type_name] = cls()
    return cls


def get_check(type_name: str) -> Check:
    check = REGISTRY.get(type_name)
    if check is None:
        # Imported on first need only: importing on every call cost a few µs per check.
        load_builtin_checks()
        check = REGISTRY.get(type_name)
    if check is None:
        raise InvalidSettingError("type", f"unknown check type {type_name!r}")
    return check


BUILTIN = ("http", "tcp", "dns", "tls", "icmp", "heartbeat")


def load_builtin_checks() -> None:
    """Import the built-in check modules for their @register side effect."""
    for name in BUILTIN:
        importlib.import_module(f"pingtower.pinger.checks.{name}")


def ms(seconds: float) -> float:
    """`seconds` in milliseconds to the microsecond, as `round(seconds * 1000, 3)` gives them
    in a third of its time (rounding to digits goes through a decimal conversion; a check
    rounds four times). The two differ only on an exact half microsecond (this one rounds it to
    even), which a difference of two clock readings does not come to."""
    return round(seconds * 1_000_000) / 1000
