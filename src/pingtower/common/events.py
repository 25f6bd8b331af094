"""Event envelope and the versioned contracts of every event between services.

An envelope is what travels on the bus: an id that consumers deduplicate on, the event type that is
also its routing key, a contract version, when it happened, who produced it, the workspace
(tenant) it belongs to, and the payload. Payload models live here, in one place, so a producer and
its consumers can never disagree about a field; `docs/asyncapi.yaml` documents them.
"""

from __future__ import annotations

import builtins
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field


def utcnow() -> datetime:
    return datetime.now(UTC)


class Contract(BaseModel):
    """Base of every payload: frozen, strict about unknown fields, typed and versioned."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1


ContractT = TypeVar("ContractT", bound=Contract)


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    # The contract an envelope was wrapped from, so that in-process consumers get it back
    # without validating the payload again (that was a fifth of the embedded evaluator's CPU;
    # bench/README.md). A slot, not a pydantic field or private attribute: equality,
    # serialisation and copies see only the fields. Sharing is safe: contracts are frozen.
    __slots__ = ("_contract",)

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str
    version: int = 1
    occurred_at: datetime = Field(default_factory=utcnow)
    producer: str
    tenant: str
    payload: dict[str, Any]

    @classmethod
    def wrap(
        cls,
        event: Contract,
        *,
        producer: str,
        tenant: str,
        occurred_at: datetime | None = None,
        id: uuid.UUID | None = None,
        payload: dict[str, Any] | None = None,
    ) -> Envelope:
        """`payload`: the event's JSON form if the caller has it already (it must equal
        `event.model_dump(mode="json")`; the scheduler keeps most of a job's dumped)."""
        envelope = cls(
            id=id or uuid.uuid4(),
            type=event.TYPE,
            version=event.VERSION,
            occurred_at=occurred_at or utcnow(),
            producer=producer,
            tenant=tenant,
            payload=event.model_dump(mode="json") if payload is None else payload,
        )
        object.__setattr__(envelope, "_contract", event)  # the model is frozen
        return envelope

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, body: bytes) -> Envelope:
        return cls.model_validate_json(body)

    def parse(self) -> Contract:
        """The payload as its contract model; raises UnknownEvent or pydantic's ValidationError.

        An envelope made by `wrap` in this process returns the very contract it was made from."""
        model = CONTRACTS.get((self.type, self.version))
        if model is None:
            raise UnknownEventError(f"no contract for {self.type} v{self.version}")
        return self.parse_as(model)

    def parse_as(self, model: builtins.type[ContractT]) -> ContractT:
        """The payload as `model`, for messages whose contract is not registered by type (such
        as check jobs); the contract it was wrapped from if that is a `model`."""
        kept = getattr(self, "_contract", None)  # None: made from bytes or fields
        if type(kept) is model:
            return kept
        return model.model_validate(self.payload)


class UnknownEventError(ValueError):
    pass


CONTRACTS: dict[tuple[str, int], type[Contract]] = {}
C = TypeVar("C", bound=type[Contract])


def contract(cls: C) -> C:
    CONTRACTS[(cls.TYPE, cls.VERSION)] = cls
    return cls


class Outcome(StrEnum):
    """What one check saw."""

    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"


class Status(StrEnum):
    """A monitor's status, decided by the Pinger's evaluator."""

    UNKNOWN = "unknown"
    UP = "up"
    DEGRADED = "degraded"
    PENDING = "pending"
    DOWN = "down"
    PAUSED = "paused"
    MAINTENANCE = "maintenance"


# --- monitor.* ------------------------------------------------------------------------------


class SloSetting(BaseModel):
    """A service level objective carried by a monitor: the share of time it should be up over
    a rolling window. The same unit and bounds as the Statistics SLO API's."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    objective: float = Field(gt=0, lt=1, description="0.999 for 99.9%")
    window_days: int = Field(30, ge=1, le=365)


class MonitorSnapshot(Contract):
    """What other services need to know of a monitor (their local projection)."""

    monitor_id: uuid.UUID
    name: str
    type: str
    target: str
    tags: list[str] = []
    interval_seconds: int
    regions: list[str] = ["default"]
    parent_id: uuid.UUID | None = None
    paused: bool = False
    public: bool = False
    # Optional, defaulted: v1 events written before monitors carried an SLO still parse.
    slo: SloSetting | None = None


@contract
class MonitorCreated(MonitorSnapshot):
    TYPE = "monitor.created"


@contract
class MonitorUpdated(MonitorSnapshot):
    TYPE = "monitor.updated"


@contract
class MonitorDeleted(Contract):
    TYPE = "monitor.deleted"
    monitor_id: uuid.UUID


# --- check.* --------------------------------------------------------------------------------


class CheckJob(Contract):
    """A command from the scheduler to a probe: run this check before the deadline, or drop it.

    It carries the whole check specification so that a probe needs no database.
    """

    TYPE = "check.job"
    job_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    monitor_id: uuid.UUID
    check_type: str
    target: str
    settings: dict[str, Any] = {}
    timeout_seconds: float
    scheduled_at: datetime
    deadline: datetime
    region: str = "default"


@contract
class CheckCompleted(Contract):
    TYPE = "check.completed"
    check_id: uuid.UUID
    monitor_id: uuid.UUID
    region: str
    scheduled_at: datetime
    started_at: datetime
    finished_at: datetime
    outcome: Outcome
    latency_ms: float | None = None
    error_kind: str | None = None
    error_message: str | None = None
    status_code: int | None = None
    size_bytes: int | None = None
    phases_ms: dict[str, float] = {}
    cert_expires_at: datetime | None = None


# --- monitor.status_changed and incidents ---------------------------------------------------


@contract
class MonitorStatusChanged(Contract):
    TYPE = "monitor.status_changed"
    monitor_id: uuid.UUID
    previous: Status
    current: Status
    changed_at: datetime
    reason: str = ""
    check_id: uuid.UUID | None = None
    incident_id: uuid.UUID | None = None
    error_kind: str | None = None
    error_message: str | None = None


@contract
class IncidentOpened(Contract):
    TYPE = "incident.opened"
    incident_id: uuid.UUID
    monitor_id: uuid.UUID
    started_at: datetime
    cause: str | None = None
    first_error: str | None = None
    region: str | None = None
    parent_incident_id: uuid.UUID | None = None


@contract
class IncidentResolved(Contract):
    TYPE = "incident.resolved"
    incident_id: uuid.UUID
    monitor_id: uuid.UUID
    started_at: datetime
    resolved_at: datetime


# --- notification.* and slo.* ---------------------------------------------------------------


class NotificationOutcome(Contract):
    notification_id: uuid.UUID
    channel_id: uuid.UUID
    channel_type: str
    monitor_id: uuid.UUID | None = None
    kind: str
    attempts: int
    error: str | None = None


@contract
class NotificationDelivered(NotificationOutcome):
    TYPE = "notification.delivered"


@contract
class NotificationFailed(NotificationOutcome):
    TYPE = "notification.failed"


@contract
class SloBurnRateExceeded(Contract):
    TYPE = "slo.burn_rate_exceeded"
    slo_id: uuid.UUID
    monitor_id: uuid.UUID | None = None
    tag: str | None = None
    objective: float
    long_window_seconds: int
    short_window_seconds: int
    burn_rate_long: float
    burn_rate_short: float
    threshold: float


EventType = Literal[
    "monitor.created",
    "monitor.updated",
    "monitor.deleted",
    "check.completed",
    "monitor.status_changed",
    "incident.opened",
    "incident.resolved",
    "notification.delivered",
    "notification.failed",
    "slo.burn_rate_exceeded",
]
