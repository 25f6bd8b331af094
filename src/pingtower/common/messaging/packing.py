"""Several events in one AMQP message: the RabbitMQ transport's framing of a batch.

Every AMQP message costs the broker a routing decision, an entry in each quorum queue's
replicated log, a delivery and an acknowledgement, and costs the consumer a delivery's frames
and objects, whatever its size. A probe publishes its results in batches of one routing key
(`check.completed`), so sending such a batch as one message divides those costs by its size.

A packed message has the content type `PACKED_CONTENT_TYPE`, the number of events in the
header `COUNT_HEADER`, and a body that is a JSON array of the envelopes' own JSON. Only events
that follow one another in a `publish` call with the same routing key share a message, so
every queue still receives the events in the order they were published. A lone event is sent
as before: one envelope, `application/json`.

Check jobs published together (a scheduler tick's) travel the same way, cut per region rather
than per run of a routing key (a job queue is a work queue: the order between its jobs is no
promise), `MAX_PACKED_JOBS` at most: few enough that the probes of a region still share a tick
between them pack by pack (a consumer holds whole packs). A pack expires when its last job's
deadline passes, so the broker never drops a job that is still valid; the probe drops the stale
ones of a pack one by one, as it does any late job. A job already past its deadline when
published goes alone, so that it expires at the broker (dead-lettered, where an operator sees
it) as before.

This is a framing of the transport, not a contract change: consumers get the envelopes, one by
one, exactly as if each had come alone. Pure functions here; rabbitmq.py does the I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import TypeAdapter

from pingtower.common.events import Envelope

PACKED_CONTENT_TYPE = "application/vnd.pingtower.events+json"
SINGLE_CONTENT_TYPE = "application/json"
COUNT_HEADER = "x-pingtower-events"
# Enough to make a message's fixed costs small beside its events' (a hundredth), few enough
# that a consumer's prefetch of messages does not put tens of thousands of events in hand.
MAX_PACKED_EVENTS = 100
# Bodies above this are not joined with others: a large message holds up its queue, and the
# per-message saving no longer matters beside its size.
MAX_PACKED_BYTES = 256 * 1024
# Jobs of one region in one message at most: a sixteenth of the per-message costs per job (the
# saving left beyond that is small), and a consumer's prefetch of a few packs stays well below
# the jobs it runs at once (rabbitmq.py), so that a tick's packs are spread over the probes.
MAX_PACKED_JOBS = 16

_ENVELOPES = TypeAdapter(list[Envelope])


class UnpackError(ValueError):
    """A message claims to be a pack but is not a well-formed one."""


@dataclass
class Pack:
    """Events of one routing key, consecutive in their publish call, bound for one message."""

    routing_key: str
    envelopes: list[Envelope] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    size: int = 0

    @property
    def packed(self) -> bool:
        return len(self.envelopes) > 1

    def body(self) -> bytes:
        if not self.packed:
            return self.bodies[0]
        return b"[" + b",".join(self.bodies) + b"]"

    def add(self, envelope: Envelope, body: bytes) -> None:
        self.envelopes.append(envelope)
        self.bodies.append(body)
        self.size += len(body) + 1


def packs_of(
    envelopes: Sequence[Envelope],
    *,
    max_events: int = MAX_PACKED_EVENTS,
    max_bytes: int = MAX_PACKED_BYTES,
) -> list[Pack]:
    """`envelopes` cut into messages, in order: each run of one routing key (the type) is cut
    where a message would exceed `max_events` events or `max_bytes` of body; an event larger
    than `max_bytes` goes alone. `max_events` 1 sends every event alone."""
    packs: list[Pack] = []
    current: Pack | None = None
    for envelope in envelopes:
        body = envelope.to_bytes()
        if (
            current is None
            or current.routing_key != envelope.type
            or len(current.envelopes) >= max_events
            or current.size + len(body) + 2 > max_bytes
        ):
            current = Pack(envelope.type)
            packs.append(current)
        current.add(envelope, body)
    return packs


@dataclass
class JobPack(Pack):
    """Check jobs of one region (the routing key) bound for one message."""

    deadline: datetime | None = None  # the latest of its jobs': when the message expires

    def add_job(self, job: Envelope, body: bytes, deadline: datetime) -> None:
        self.add(job, body)
        if self.deadline is None or deadline > self.deadline:
            self.deadline = deadline


def deadline_of(job: Envelope) -> datetime:
    """A check job's deadline, read straight from its payload (validating the whole CheckJob
    again for one field was a measurable share of the scheduler's CPU per job)."""
    raw = job.payload["deadline"]
    return raw if isinstance(raw, datetime) else datetime.fromisoformat(raw)


def job_packs_of(
    jobs: Sequence[tuple[Envelope, str]],
    *,
    now: datetime,
    max_jobs: int = MAX_PACKED_JOBS,
    max_bytes: int = MAX_PACKED_BYTES,
) -> list[JobPack]:
    """`jobs` (each with its region) cut into messages: the jobs of a region, in the order
    given, in packs of at most `max_jobs` jobs and `max_bytes` of body; a job whose deadline is
    not after `now` goes alone. `max_jobs` 1 sends every job alone. The packs are in the order
    of their first job."""
    packs: list[JobPack] = []
    filling: dict[str, JobPack] = {}
    for job, region in jobs:
        body = job.to_bytes()
        deadline = deadline_of(job)
        if deadline <= now:
            pack = JobPack(region)
            packs.append(pack)
        else:
            current = filling.get(region)
            if (
                current is None
                or len(current.envelopes) >= max_jobs
                or current.size + len(body) + 2 > max_bytes
            ):
                current = filling[region] = JobPack(region)
                packs.append(current)
            pack = current
        pack.add_job(job, body, deadline)
    return packs


def is_packed(content_type: str | None) -> bool:
    return content_type == PACKED_CONTENT_TYPE


def declared_count(headers: object) -> int:
    """How many events a message says it holds (1 if it does not say: a single event)."""
    count = headers.get(COUNT_HEADER) if isinstance(headers, dict) else None
    return count if isinstance(count, int) and count > 0 else 1


def unpack(body: bytes, count: int) -> list[Envelope]:
    """The envelopes of a packed message's body; raises UnpackError if the body is not a JSON
    array of `count` valid envelopes (a truncated or tampered message is rejected whole)."""
    try:
        envelopes = _ENVELOPES.validate_json(body)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise UnpackError(str(exc).splitlines()[0]) from exc
    if len(envelopes) != count or not envelopes:
        raise UnpackError(f"the message says {count} events, its body holds {len(envelopes)}")
    return envelopes
