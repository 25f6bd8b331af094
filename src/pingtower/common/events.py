"""Event envelope and the versioned contracts of every event between services.

An envelope is what travels on the bus: an id that consumers deduplicate on, the event type that is
also its routing key, a contract version, when it happened, who produced it, the workspace
(tenant) it belongs to, and the payload. Payload models live here, in one place, so a producer and
its consumers can never disagree about a field; `docs/asyncapi.yaml` documents them.
"""

from __future__ import annotations

import builtins
import itertools
import os
import uuid
from collections.abc import Callable, Generator, Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field


def utcnow() -> datetime:
    return datetime.now(UTC)


class Contract(BaseModel):
    """Base of every payload: frozen, strict about unknown fields, typed and versioned."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1


ContractT = TypeVar("ContractT", bound=Contract)
# Each contract's field names, shared by the contracts `trusted` makes: pydantic reads the set
# and copies it before it changes one (`model_copy`), as with the scheduler's job templates.
_FIELD_NAMES: dict[type[Contract], set[str]] = {}


def trusted(model: builtins.type[ContractT], fields: dict[str, Any]) -> ContractT:
    """`model(**fields)` without validating: for an event whose every value our own code made,
    already of its field's type as validation would leave it (a float field gets a float, not
    an int; an enum field its member) and every field given. The event keeps `fields` as its
    own: the caller must not change it. Validating a probe's `check.completed` cost more than
    the rest of the probe's work around the check; a test holds the result equal, and its JSON
    identical, to the validated one."""
    event = model.__new__(model)
    names = _FIELD_NAMES.get(model)
    if names is None:
        if model.__private_attributes__:  # they would need their defaults set
            raise TypeError(f"{model.__name__} has private attributes: validate it instead")
        names = _FIELD_NAMES[model] = set(model.model_fields)
    object.__setattr__(event, "__dict__", fields)  # the model is frozen
    object.__setattr__(event, "__pydantic_fields_set__", names)
    object.__setattr__(event, "__pydantic_extra__", None)
    object.__setattr__(event, "__pydantic_private__", None)
    return event


# Event ids: a random prefix drawn once per process and a counter, shaped as a version-4 UUID
# (version and variant bits set; 60 random bits, 62 counter bits), as the scheduler makes job
# ids. An event id must be unique (consumers deduplicate on it), not unguessable, and `uuid4`
# is a system call for 16 random bytes per event. Two processes collide only if they draw the
# same prefix (2**-60 per pair); a process would need 2**62 events to wrap.
_COUNTER_BITS = 62
_COUNTER_MASK = (1 << _COUNTER_BITS) - 1
_id_prefix = 0


def _draw_id_prefix() -> None:
    global _id_prefix  # the process's own: a forked child draws its own
    _id_prefix = (uuid.uuid4().int >> _COUNTER_BITS) << _COUNTER_BITS


_draw_id_prefix()
os.register_at_fork(after_in_child=_draw_id_prefix)
_id_counter = itertools.count()


def new_event_id() -> uuid.UUID:
    # The UUID's two slots set directly: `uuid.UUID(int=...)` checks its arguments in Python
    # (a microsecond per event); the value is in range by construction.
    event_id = _new_object(uuid.UUID)
    _set_slot(event_id, "int", _id_prefix | (next(_id_counter) & _COUNTER_MASK))
    _set_slot(event_id, "is_safe", _UNKNOWN_SAFETY)
    return event_id


_new_object = object.__new__
_set_slot = object.__setattr__  # UUID's own __setattr__ refuses: it is immutable
_UNKNOWN_SAFETY = uuid.SafeUUID.unknown  # an enum member's lookup is a descriptor call each time


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    # The contract an envelope was wrapped from, so that in-process consumers get it back
    # without validating the payload again (that was a fifth of the embedded evaluator's CPU;
    # bench/README.md). A slot, not a pydantic field or private attribute: equality,
    # serialisation and copies see only the fields. Sharing is safe: contracts are frozen.
    # `_dump`: what makes the payload from the contract when something reads it (None: the
    # contract's JSON-mode dump).
    __slots__ = ("_contract", "_dump")

    id: uuid.UUID = Field(default_factory=new_event_id)
    type: str
    version: int = 1
    occurred_at: datetime = Field(default_factory=utcnow)
    producer: str
    tenant: str
    # An envelope made by `wrap` without a payload dumps its contract only when something
    # reads the payload (the attribute, a dump, bytes, equality, a copy): in-process consumers
    # take the contract itself, and the JSON-mode dump was a third of a check result's way to
    # its consumers in the embedded mode (bench/README.md, performance round 5).
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
        dump: Callable[[Any], dict[str, Any]] | None = None,
    ) -> Envelope:
        """`payload`: the event's JSON form if the caller has it already (it must equal
        `event.model_dump(mode="json")`). The envelope keeps that dict: the caller must not
        change it afterwards. `dump`: a function that makes that JSON form from the event, called
        only if something reads the payload (the scheduler makes a job's from its template; an
        in-process probe never reads it)."""
        # Not validated: every value is typed, and the contract was validated when it was
        # made; validating the envelope's fields again cost as much as dumping the contract.
        fields: dict[str, Any] = {
            "id": id or new_event_id(),
            "type": event.TYPE,
            "version": event.VERSION,
            "occurred_at": occurred_at or utcnow(),
            "producer": producer,
            "tenant": tenant,
        }
        if payload is not None:
            fields["payload"] = payload
        envelope = cls.__new__(cls)
        set_slot = _set_slot  # the model is frozen
        set_slot(envelope, "__dict__", fields)
        # Shared by every wrapped envelope, as `trusted` shares a contract's: frozen models never
        # add to it, and pydantic's copies copy it first.
        set_slot(envelope, "__pydantic_fields_set__", _ENVELOPE_FIELD_SET)
        set_slot(envelope, "__pydantic_extra__", None)
        set_slot(envelope, "__pydantic_private__", None)
        set_slot(envelope, "_contract", event)
        set_slot(envelope, "_dump", dump)
        return envelope

    def _with_payload(self) -> None:
        """Puts the payload in place, dumped from the contract, if it is not yet."""
        fields = self.__dict__
        if "payload" not in fields:
            # Idempotent: two threads that both dump store equal dicts.
            contract: Contract = object.__getattribute__(self, "_contract")
            dump = object.__getattribute__(self, "_dump")
            fields["payload"] = contract.model_dump(mode="json") if dump is None else dump(contract)

    if not TYPE_CHECKING:  # BaseModel.__getattr__ exists only at run time

        def __getattr__(self, name: str) -> Any:
            if name == "payload":
                self._with_payload()
                return self.__dict__["payload"]
            return super().__getattr__(name)

    # Everything of BaseModel's that reads the fields straight from `__dict__` sees a payload.
    def __eq__(self, other: object) -> bool:
        if isinstance(other, Envelope):
            other._with_payload()
        self._with_payload()
        return super().__eq__(other)

    def __hash__(self) -> int:
        # What pydantic's hash of a frozen model hashes (so, as before, a TypeError: the
        # payload is a dict); defining __hash__ here replaces the one pydantic would make.
        self._with_payload()
        return hash(tuple(self.__dict__[name] for name in type(self).model_fields))

    def __iter__(self) -> Generator[tuple[str, Any], None, None]:
        self._with_payload()
        return super().__iter__()

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        self._with_payload()
        return super().__repr_args__()

    def __getstate__(self) -> dict[Any, Any]:
        self._with_payload()
        return super().__getstate__()

    def __copy__(self) -> Self:
        self._with_payload()
        return super().__copy__()

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        self._with_payload()
        return super().__deepcopy__(memo)

    def model_copy(self, *args: Any, **kwargs: Any) -> Self:
        self._with_payload()
        return super().model_copy(*args, **kwargs)

    def model_dump(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self._with_payload()
        return super().model_dump(*args, **kwargs)

    def model_dump_json(self, *args: Any, **kwargs: Any) -> str:
        self._with_payload()
        return super().model_dump_json(*args, **kwargs)

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


_ENVELOPE_FIELDS = frozenset(Envelope.model_fields)
_ENVELOPE_FIELD_SET = set(_ENVELOPE_FIELDS)


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
