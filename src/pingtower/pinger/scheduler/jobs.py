"""Building the check job a probe receives: the whole check specification plus its deadline.

A monitor's job differs from run to run only in its id and its two times, so what depends on
the monitor alone (the validated contract, its JSON payload with the settings) is made once
per region in a `JobTemplate` when the monitor changes, and a run swaps the id and the times in.
Built from scratch, a job was two pydantic validations, a JSON-mode dump of the settings and two
`uuid4` per run: a third of the scheduler's CPU in the embedded process (bench/README.md,
performance round 5).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pingtower.common.events import CheckJob, Envelope, new_event_id, trusted

PRODUCER = "pinger.scheduler"
# Stands in for the run's own values in a template; replaced in every job made from it.
_PLACEHOLDER_TIME = datetime(1970, 1, 1, tzinfo=UTC)
_PLACEHOLDER_ID = uuid.UUID(int=0)
_ALL_FIELDS = set(CheckJob.model_fields)

# A job id is an event id (`new_event_id`: unique, not secret, no system call per id): a job
# is one message, and its envelope carries the same id.
new_job_id = new_event_id


def json_time(moment: datetime) -> str:
    """A datetime as pydantic writes it in JSON mode (UTC as "Z", not "+00:00"), without its
    serializer: the job's times are the only fields a run changes in the template's payload
    (tests hold it equal to pydantic's output)."""
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class JobTemplate:
    """A monitor's check job in one region, without its id and times. Its contract is
    validated and dumped at the first run after the monitor changed, not when the schedule is
    loaded: a new leader's load of 50,000 monitors does not pay for them all at once."""

    __slots__ = ("_job", "_payload", "_spec", "region", "tenant")

    def __init__(
        self,
        *,
        monitor_id: uuid.UUID,
        tenant: str,
        check_type: str,
        target: str,
        settings: dict[str, Any],
        timeout_seconds: float,
        region: str,
    ) -> None:
        self.tenant = tenant
        self.region = region
        # A tuple until the first run (a dict was 0.1 KiB more per monitor).
        self._spec = (monitor_id, check_type, target, settings, timeout_seconds)
        self._job: CheckJob | None = None
        self._payload: dict[str, Any] = {}

    def _built(self) -> CheckJob:
        job = self._job
        if job is None:
            monitor_id, check_type, target, settings, timeout_seconds = self._spec
            # Validated once: every job made from it is this contract with other ids and times.
            validated = CheckJob(
                job_id=_PLACEHOLDER_ID,
                monitor_id=monitor_id,
                check_type=check_type,
                target=target,
                settings=settings,
                timeout_seconds=timeout_seconds,
                scheduled_at=_PLACEHOLDER_TIME,
                deadline=_PLACEHOLDER_TIME,
                region=self.region,
            )
            # The same values, with one set of field names for every template (pydantic keeps
            # the set it is given; a copy updates its own): a set per template was 0.7 KiB.
            job = self._job = CheckJob.model_construct(_ALL_FIELDS, **dict(validated))
            # The placeholders' keys keep their places, so that a run's payload, and the bytes
            # RabbitMQ carries, are what `Envelope.wrap` of the whole job would make; their
            # values are dropped (a run sets them), and settings that are JSON already are
            # shared with the contract: a template stays near a kilobyte per monitor.
            payload = job.model_dump(mode="json")
            payload.update(job_id=None, scheduled_at=None, deadline=None)
            if payload["settings"] == job.settings:
                payload["settings"] = job.settings
            self._payload = payload
            del self._spec  # its values live in the contract now
        return job

    def envelope(self, scheduled_at: datetime, deadline: datetime) -> Envelope:
        """The job of one run (a new id), wrapped: what `Envelope.wrap` of the whole job would
        make, field for field and byte for byte. The envelope's id is the job's: a job is one
        message, published again only as itself."""
        job_id = new_job_id()
        # The template's contract with the run's three values, as pydantic's `model_copy`
        # makes it (the template's `__dict__` copied, the values set) without its copy
        # machinery, which was most of a job's cost: unvalidated by design, as `model_copy(
        # update=...)` is (the template was validated; the values have the fields' types). A
        # shallow copy: every run shares the template's settings, as in-process consumers share
        # one contract (frozen; nothing writes a job's settings).
        job = self._job
        if job is None:
            job = self._built()
        fields = job.__dict__.copy()
        fields["job_id"] = job_id
        fields["scheduled_at"] = scheduled_at
        fields["deadline"] = deadline
        job = trusted(CheckJob, fields)
        # The payload is made only if something reads it (RabbitMQ's body): an in-process probe
        # takes the contract itself.
        return Envelope.wrap(
            job,
            producer=PRODUCER,
            tenant=self.tenant,
            occurred_at=scheduled_at,
            id=job_id,
            dump=self.payload_of,
        )

    def payload_of(self, job: CheckJob) -> dict[str, Any]:
        """The JSON form of a job made from this template (`job.model_dump(mode="json")`): the
        template's, with the run's three values written in."""
        return {
            **self._payload,
            "job_id": str(job.job_id),
            "scheduled_at": json_time(job.scheduled_at),
            "deadline": json_time(job.deadline),
        }


def templates_of(monitor: Any) -> tuple[JobTemplate, ...]:
    """A monitor row's job templates, one per region (a row of the monitors table, or any
    object with its `id`, `tenant`, `type`, `target`, `settings`, `timeout_seconds` and
    `regions`)."""
    return tuple(
        JobTemplate(
            monitor_id=monitor.id,
            tenant=monitor.tenant,
            check_type=monitor.type,
            target=monitor.target,
            settings=monitor.settings,
            timeout_seconds=monitor.timeout_seconds,
            region=region,
        )
        for region in monitor.regions
    )


def job_envelope(
    *,
    monitor_id: uuid.UUID,
    tenant: str,
    check_type: str,
    target: str,
    settings: dict[str, Any],
    timeout_seconds: float,
    region: str,
    scheduled_at: datetime,
    interval_seconds: float,
) -> Envelope:
    """One job on its own, from its fields; the scheduler keeps a template per monitor."""
    template = JobTemplate(
        monitor_id=monitor_id,
        tenant=tenant,
        check_type=check_type,
        target=target,
        settings=settings,
        timeout_seconds=timeout_seconds,
        region=region,
    )
    return template.envelope(scheduled_at, scheduled_at + timedelta(seconds=interval_seconds))
