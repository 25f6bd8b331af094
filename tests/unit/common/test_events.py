"""The envelope and the versioned contracts: what travels on the bus, and how it is read back."""

from __future__ import annotations

import copy
import pickle
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from pingtower.common.events import (
    CONTRACTS,
    CheckCompleted,
    CheckJob,
    Contract,
    Envelope,
    EventType,
    IncidentOpened,
    MonitorCreated,
    MonitorDeleted,
    Outcome,
    UnknownEventError,
    new_event_id,
)

FINITE = st.floats(allow_nan=False, allow_infinity=False)


def contract_values(model: type[Contract]) -> st.SearchStrategy[Contract]:
    """Any valid instance of `model`. Floats are finite: JSON has no NaN, and no producer may
    send one."""
    overrides: dict[str, st.SearchStrategy[Any]] = {}
    for name, field in model.model_fields.items():
        if field.annotation is float:
            overrides[name] = FINITE
        elif field.annotation == float | None:
            overrides[name] = st.none() | FINITE
        elif field.annotation == dict[str, float]:
            overrides[name] = st.dictionaries(st.text(max_size=10), FINITE, max_size=4)
    return st.builds(model, **overrides)


ANY_CONTRACT = st.sampled_from(sorted(CONTRACTS.values(), key=lambda m: m.TYPE)).flatmap(
    contract_values
)


def completed_check(**changes: Any) -> CheckCompleted:
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    values: dict[str, Any] = {
        "check_id": uuid.uuid4(),
        "monitor_id": uuid.uuid4(),
        "region": "eu",
        "scheduled_at": now,
        "started_at": now,
        "finished_at": now + timedelta(milliseconds=120),
        "outcome": Outcome.UP,
        "latency_ms": 120.0,
        "status_code": 200,
    }
    values.update(changes)
    return CheckCompleted(**values)


def test_an_envelope_carries_the_contract_type_and_version() -> None:
    event = completed_check()
    envelope = Envelope.wrap(event, producer="pinger", tenant="acme")
    assert envelope.type == "check.completed"
    assert envelope.version == CheckCompleted.VERSION
    assert envelope.producer == "pinger"
    assert envelope.tenant == "acme"
    assert envelope.occurred_at.tzinfo is not None


def test_every_envelope_gets_its_own_id() -> None:
    event = completed_check()
    first = Envelope.wrap(event, producer="pinger", tenant="acme")
    second = Envelope.wrap(event, producer="pinger", tenant="acme")
    assert first.id != second.id


@given(event=ANY_CONTRACT, tenant=st.text(min_size=1, max_size=20))
def test_every_contract_survives_the_trip_through_bytes(event: Contract, tenant: str) -> None:
    envelope = Envelope.wrap(event, producer="test", tenant=tenant)
    received = Envelope.from_bytes(envelope.to_bytes())
    assert received == envelope
    assert received.parse() == event
    assert type(received.parse()) is type(event)


def test_parse_gives_the_contract_model_with_typed_fields() -> None:
    event = completed_check(outcome=Outcome.DOWN, error_kind="timeout", latency_ms=None)
    parsed = Envelope.from_bytes(Envelope.wrap(event, producer="p", tenant="t").to_bytes()).parse()
    assert isinstance(parsed, CheckCompleted)
    assert parsed.outcome is Outcome.DOWN
    assert parsed.finished_at == event.finished_at
    assert isinstance(parsed.monitor_id, uuid.UUID)


def test_an_explicit_id_and_time_are_kept() -> None:
    message_id = uuid.uuid4()
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    envelope = Envelope.wrap(
        MonitorDeleted(monitor_id=uuid.uuid4()),
        producer="pinger",
        tenant="acme",
        id=message_id,
        occurred_at=when,
    )
    received = Envelope.from_bytes(envelope.to_bytes())
    assert received.id == message_id
    assert received.occurred_at == when


def test_an_unknown_event_type_raises() -> None:
    envelope = Envelope(type="monitor.exploded", producer="p", tenant="t", payload={})
    with pytest.raises(UnknownEventError, match=r"monitor\.exploded"):
        envelope.parse()


def test_an_unknown_version_of_a_known_type_raises() -> None:
    event = MonitorDeleted(monitor_id=uuid.uuid4())
    envelope = Envelope.wrap(event, producer="p", tenant="t").model_copy(update={"version": 99})
    with pytest.raises(UnknownEventError, match="v99"):
        envelope.parse()


def test_a_payload_with_an_unknown_field_is_rejected() -> None:
    envelope = Envelope.wrap(MonitorDeleted(monitor_id=uuid.uuid4()), producer="p", tenant="t")
    tampered = envelope.model_copy(update={"payload": {**envelope.payload, "surprise": 1}})
    with pytest.raises(ValidationError, match="surprise"):
        tampered.parse()


def test_a_payload_missing_a_required_field_is_rejected() -> None:
    envelope = Envelope(type="monitor.deleted", producer="p", tenant="t", payload={})
    with pytest.raises(ValidationError, match="monitor_id"):
        envelope.parse()


def test_an_envelope_with_an_unknown_field_is_rejected() -> None:
    body = Envelope.wrap(
        MonitorDeleted(monitor_id=uuid.uuid4()), producer="p", tenant="t"
    ).model_dump(mode="json")
    body["priority"] = "high"
    with pytest.raises(ValidationError, match="priority"):
        Envelope.model_validate(body)


def test_contracts_refuse_unknown_fields_and_are_immutable() -> None:
    with pytest.raises(ValidationError):
        MonitorDeleted(monitor_id=uuid.uuid4(), extra="x")  # type: ignore[call-arg]
    event = MonitorDeleted(monitor_id=uuid.uuid4())
    with pytest.raises(ValidationError):
        event.monitor_id = uuid.uuid4()  # type: ignore[misc]


def test_every_documented_event_type_has_exactly_one_contract() -> None:
    registered = sorted(event_type for event_type, _version in CONTRACTS)
    assert registered == sorted(get_args(EventType))


def test_monitor_snapshots_have_sensible_defaults() -> None:
    created = MonitorCreated(
        monitor_id=uuid.uuid4(), name="api", type="http", target="https://x", interval_seconds=60
    )
    assert created.regions == ["default"]
    assert created.tags == []
    assert created.paused is False


def test_a_check_job_travels_in_an_envelope_and_reads_back_as_a_job() -> None:
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    job = CheckJob(
        monitor_id=uuid.uuid4(),
        check_type="http",
        target="http://127.0.0.1:8080/health",
        settings={"method": "GET", "expect_status": [200]},
        timeout_seconds=5,
        scheduled_at=now,
        deadline=now + timedelta(seconds=60),
        region="eu",
    )
    envelope = Envelope.from_bytes(Envelope.wrap(job, producer="pinger", tenant="t").to_bytes())
    assert envelope.type == "check.job"
    assert CheckJob.model_validate(envelope.payload) == job


def test_incident_payload_keeps_optional_links() -> None:
    parent = uuid.uuid4()
    event = IncidentOpened(
        incident_id=uuid.uuid4(),
        monitor_id=uuid.uuid4(),
        started_at=datetime(2026, 11, 29, tzinfo=UTC),
        parent_incident_id=parent,
    )
    parsed = Envelope.wrap(event, producer="pinger", tenant="t").parse()
    assert isinstance(parsed, IncidentOpened)
    assert parsed.parent_incident_id == parent


def test_a_wrapped_event_parses_back_to_the_very_same_contract_object() -> None:
    # In-process consumers skip validating a payload the producer's model just produced.
    event = completed_check()
    envelope = Envelope.wrap(event, producer="pinger", tenant="t")
    assert envelope.parse() is event
    assert envelope.parse() is envelope.parse()


def test_a_wrapped_check_job_reads_back_as_the_very_same_job() -> None:
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    job = CheckJob(
        monitor_id=uuid.uuid4(),
        check_type="http",
        target="http://127.0.0.1/",
        timeout_seconds=5,
        scheduled_at=now,
        deadline=now + timedelta(seconds=60),
    )
    envelope = Envelope.wrap(job, producer="pinger", tenant="t")
    assert envelope.parse_as(CheckJob) is job
    from_bytes = Envelope.from_bytes(envelope.to_bytes()).parse_as(CheckJob)
    assert from_bytes == job
    assert from_bytes is not job


def test_the_kept_contract_changes_neither_equality_nor_serialisation() -> None:
    event = completed_check()
    wrapped = Envelope.wrap(event, producer="pinger", tenant="t")
    built = Envelope(**{name: getattr(wrapped, name) for name in Envelope.model_fields})
    assert wrapped == built
    assert wrapped.to_bytes() == built.to_bytes()
    assert set(wrapped.model_dump()) == set(Envelope.model_fields)
    assert built.parse() == event  # validated from the payload: an equal, separate object
    assert built.parse() is not event


def test_an_envelope_read_from_bytes_still_validates_its_payload() -> None:
    envelope = Envelope.wrap(completed_check(), producer="pinger", tenant="t")
    received = Envelope.from_bytes(envelope.to_bytes())
    assert received.parse() == envelope.parse()
    assert received.parse() is not envelope.parse()
    body = envelope.model_dump(mode="json")
    body["payload"]["outcome"] = "sideways"
    with pytest.raises(ValidationError, match="outcome"):
        Envelope.model_validate(body).parse()


def test_a_copy_with_another_payload_is_validated_not_given_the_old_contract() -> None:
    envelope = Envelope.wrap(completed_check(), producer="pinger", tenant="t")
    copied = envelope.model_copy(update={"payload": {**envelope.payload, "region": "us"}})
    parsed = copied.parse()
    assert isinstance(parsed, CheckCompleted)
    assert parsed.region == "us"


def eager_twin(wrapped: Envelope) -> Envelope:
    """The envelope built from fields, with the payload dumped up front."""
    contract = wrapped.parse()
    fields = {name: wrapped.__dict__[name] for name in Envelope.model_fields if name != "payload"}
    return Envelope(**fields, payload=contract.model_dump(mode="json"))


def test_a_wrapped_envelope_dumps_its_payload_only_when_something_reads_it() -> None:
    event = completed_check()
    wrapped = Envelope.wrap(event, producer="pinger", tenant="t")
    assert "payload" not in wrapped.__dict__
    assert wrapped.parse() is event  # in-process consumers need no payload
    assert "payload" not in wrapped.__dict__
    assert wrapped.payload == event.model_dump(mode="json")
    assert wrapped.payload is wrapped.payload  # dumped once


@pytest.mark.parametrize(
    "read",
    [
        lambda e: e.to_bytes(),
        lambda e: e.model_dump(),
        lambda e: e.model_dump(mode="json"),
        lambda e: e.model_dump_json(),
        lambda e: repr(e),
        lambda e: dict(e),
        lambda e: copy.copy(e).model_dump(),
        lambda e: copy.deepcopy(e).model_dump(),
        lambda e: e.model_copy().model_dump(),
        lambda e: pickle.loads(pickle.dumps(e)).model_dump(),
    ],
    ids=[
        "bytes",
        "dump",
        "json dump",
        "json",
        "repr",
        "dict",
        "copy",
        "deepcopy",
        "model_copy",
        "pickle",
    ],
)
def test_every_way_of_reading_a_wrapped_envelope_sees_its_payload(
    read: Callable[[Envelope], object],
) -> None:
    wrapped = Envelope.wrap(completed_check(), producer="pinger", tenant="t")
    assert read(wrapped) == read(eager_twin(wrapped))


@given(event=ANY_CONTRACT, tenant=st.text(min_size=1, max_size=20))
def test_a_wrapped_envelope_equals_and_serialises_as_one_built_from_its_fields(
    event: Contract, tenant: str
) -> None:
    wrapped = Envelope.wrap(event, producer="pinger", tenant=tenant)
    twin = eager_twin(
        Envelope.wrap(
            event, producer="pinger", tenant=tenant, id=wrapped.id, occurred_at=wrapped.occurred_at
        )
    )
    assert twin == wrapped  # the twin's side first: pydantic's own equality
    assert (
        Envelope.wrap(
            event, producer="pinger", tenant=tenant, id=wrapped.id, occurred_at=wrapped.occurred_at
        )
        == twin
    )
    assert wrapped.to_bytes() == twin.to_bytes()
    assert wrapped.model_fields_set == twin.model_fields_set


def test_an_envelope_is_unhashable_as_before() -> None:
    # Its payload is a dict: a dumped-on-demand payload must not make it hashable.
    with pytest.raises(TypeError, match="unhashable"):
        hash(Envelope.wrap(completed_check(), producer="pinger", tenant="t"))


def test_event_ids_are_distinct_version_4_uuids() -> None:
    ids = [new_event_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert {found.version for found in ids} == {4}
    assert {found.variant for found in ids} == {uuid.RFC_4122}
    wrapped = Envelope.wrap(completed_check(), producer="pinger", tenant="t")
    assert wrapped.id.version == 4


def test_a_given_payload_is_kept_as_given() -> None:
    event = completed_check()
    payload = event.model_dump(mode="json")
    wrapped = Envelope.wrap(event, producer="pinger", tenant="t", payload=payload)
    assert wrapped.payload is payload
    assert wrapped.to_bytes() == eager_twin(wrapped).to_bytes()


def test_a_payload_made_by_the_given_dump_is_made_only_when_read_and_only_once() -> None:
    event = completed_check()
    calls: list[Contract] = []

    def dump(contract: Contract) -> dict[str, object]:
        calls.append(contract)
        return contract.model_dump(mode="json")

    wrapped = Envelope.wrap(event, producer="pinger", tenant="t", dump=dump)
    assert wrapped.parse() is event
    assert calls == []
    assert wrapped.to_bytes() == eager_twin(wrapped).to_bytes()
    assert wrapped.payload is wrapped.payload
    assert calls == [event]


def test_wrapped_envelopes_share_their_field_set_but_a_copy_changes_only_its_own() -> None:
    first = Envelope.wrap(completed_check(), producer="pinger", tenant="t")
    second = Envelope.wrap(completed_check(), producer="pinger", tenant="t")
    changed = first.model_copy(update={"tenant": "other"})
    assert changed.tenant == "other"
    assert first.model_fields_set == second.model_fields_set == set(Envelope.model_fields)
    assert changed.model_fields_set is not first.model_fields_set
