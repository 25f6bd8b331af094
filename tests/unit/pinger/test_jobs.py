"""Check jobs made from a monitor's template are the jobs built from scratch: the same contract
for an in-process probe, the same bytes on RabbitMQ, and an id of their own per run."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from pingtower.common.events import CheckJob, Envelope
from pingtower.pinger.scheduler.jobs import PRODUCER, JobTemplate, json_time, new_job_id

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
# Whole microseconds, as datetime.fromtimestamp gives them, including none at all.
TIMES = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


def from_scratch(envelope: Envelope, spec: dict[str, Any], tenant: str) -> Envelope:
    """The job as the scheduler built it before templates: validated and dumped whole."""
    job = envelope.parse_as(CheckJob)
    whole = CheckJob(
        job_id=job.job_id,
        scheduled_at=job.scheduled_at,
        deadline=job.deadline,
        **spec,
    )
    return Envelope.wrap(
        whole, producer=PRODUCER, tenant=tenant, occurred_at=job.scheduled_at, id=envelope.id
    )


@given(
    settings=st.dictionaries(st.text(), JSON_VALUES, max_size=4),
    target=st.text(min_size=1),
    timeout=st.floats(min_value=0.1, max_value=60),
    scheduled_at=TIMES,
    window=st.floats(min_value=1, max_value=86_400),
)
def test_a_templates_job_is_the_job_built_from_scratch_in_contract_and_bytes(
    settings: dict[str, Any], target: str, timeout: float, scheduled_at: datetime, window: float
) -> None:
    spec: dict[str, Any] = {
        "monitor_id": uuid.uuid4(),
        "check_type": "http",
        "target": target,
        "settings": settings,
        "timeout_seconds": timeout,
        "region": "eu",
    }
    template = JobTemplate(tenant="acme", **spec)
    deadline = scheduled_at + timedelta(seconds=window)

    envelope = template.envelope(scheduled_at, deadline)

    reference = from_scratch(envelope, spec, "acme")
    assert envelope.to_bytes() == reference.to_bytes()  # what RabbitMQ carries
    assert envelope == reference
    # What an in-process probe gets: the contract itself, equal to the payload validated.
    job = envelope.parse_as(CheckJob)
    assert job == reference.parse_as(CheckJob) == CheckJob.model_validate(envelope.payload)
    assert (job.scheduled_at, job.deadline, job.region) == (scheduled_at, deadline, "eu")
    # And what a probe on RabbitMQ reads back.
    assert Envelope.from_bytes(envelope.to_bytes()).parse_as(CheckJob) == job
    # Made without pydantic's copy: field for field the validated job, every field set.
    validated = reference.parse_as(CheckJob)
    assert list(job.__dict__.items()) == list(validated.__dict__.items())
    assert job.model_fields_set == validated.model_fields_set == set(CheckJob.model_fields)
    assert (job.__pydantic_extra__, job.__pydantic_private__) == (None, None)


def test_each_run_gets_its_own_job_and_id_and_leaves_the_earlier_ones_as_they_were() -> None:
    template = JobTemplate(
        monitor_id=uuid.uuid4(),
        tenant="acme",
        check_type="tcp",
        target="127.0.0.1:9",
        settings={"port": 9},
        timeout_seconds=2.0,
        region="default",
    )
    first_at = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
    first = template.envelope(first_at, first_at + timedelta(seconds=30))
    second = template.envelope(first_at + timedelta(seconds=30), first_at + timedelta(seconds=60))

    assert first.id != second.id
    assert first.parse_as(CheckJob).job_id == first.id  # one job, one message
    assert first.parse_as(CheckJob).scheduled_at == first_at
    assert first.payload["scheduled_at"] == "2027-01-15T08:00:00Z"
    assert second.parse_as(CheckJob).scheduled_at == first_at + timedelta(seconds=30)


def test_job_ids_are_unique_version_4_uuids() -> None:
    ids = [new_job_id() for _ in range(10_000)]

    assert len(set(ids)) == len(ids)
    assert {i.version for i in ids} == {4}
    assert {i.variant for i in ids} == {uuid.RFC_4122}


@given(moment=TIMES)
def test_json_time_writes_a_utc_time_as_pydantic_does(moment: datetime) -> None:
    job = CheckJob(
        monitor_id=uuid.uuid4(),
        check_type="http",
        target="x",
        timeout_seconds=1,
        scheduled_at=moment,
        deadline=moment,
    )
    assert json_time(moment) == job.model_dump(mode="json")["scheduled_at"]


def test_json_time_writes_other_offsets_and_naive_times_as_pydantic_does() -> None:
    moments = [
        datetime(2027, 6, 1, 12, 0, 0, 500, tzinfo=timezone(timedelta(hours=2))),
        datetime(2027, 1, 15, 8, 0, tzinfo=ZoneInfo("Europe/London")),  # offset zero, not UTC
        datetime(2027, 1, 15, 8, 0, 0, 1),
    ]
    for moment in moments:
        job = CheckJob(
            monitor_id=uuid.uuid4(),
            check_type="http",
            target="x",
            timeout_seconds=1,
            scheduled_at=moment,
            deadline=moment,
        )
        assert json_time(moment) == job.model_dump(mode="json")["scheduled_at"], moment


def test_a_jobs_payload_is_made_from_its_template_only_when_something_reads_it() -> None:
    template = JobTemplate(
        monitor_id=uuid.uuid4(),
        tenant="acme",
        check_type="http",
        target="https://example.com/health",
        settings={"method": "GET", "expected_status": [200, 204]},
        timeout_seconds=5.0,
        region="eu",
    )
    scheduled_at = datetime(2027, 1, 15, 8, 0, 0, 250_000, tzinfo=UTC)
    envelope = template.envelope(scheduled_at, scheduled_at + timedelta(seconds=20))
    job = envelope.parse_as(CheckJob)

    assert "payload" not in envelope.__dict__  # an in-process probe never needs it
    body = envelope.to_bytes()  # what RabbitMQ carries: made from the template's payload
    assert envelope.payload == job.model_dump(mode="json")
    assert list(envelope.payload) == list(job.model_dump(mode="json"))  # and in its order
    assert body == Envelope.model_validate_json(body).to_bytes()
    assert envelope.payload["scheduled_at"] == "2027-01-15T08:00:00.250000Z"
    assert envelope.payload["job_id"] == str(envelope.id)
    # Each run's payload is its own; the template's stays as it was.
    other = template.envelope(scheduled_at + timedelta(seconds=20), scheduled_at)
    assert other.payload["job_id"] != envelope.payload["job_id"]
    assert envelope.payload["scheduled_at"] == "2027-01-15T08:00:00.250000Z"
