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

This is a framing of the transport, not a contract change: consumers get the envelopes, one by
one, exactly as if each had come alone. Pure functions here; rabbitmq.py does the I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

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
