"""Publishing a batch of messages on a confirming aiormq channel in one step, their
confirmations awaited together.

aiormq's `basic_publish` is one coroutine per message: a timeout scope, the channel lock, a
confirmation future, a frame put on the writer's queue, and the caller's task (one per message
when a batch is gathered). For a probe publishing its results that was about a fifth of its CPU
per check, more than the message's own encoding (bench/README.md, round 5). Here the frames of
the whole batch are encoded first, then, under the channel lock, the batch takes its delivery
tags and confirmation futures and goes to the writer as one frame sequence.

It uses aiormq's channel attributes that its own publish uses (`lock`, `delivery_tag`,
`confirmations`, `write_queue`, `create_future`, `max_content_size`, `number`; aiormq is pinned
below 8 in pyproject.toml). Everything that can fail (encoding) happens before a delivery tag is
taken: a tag taken for a message that is not sent would shift every later confirmation onto the
wrong message. A channel that closes rejects the pending confirmations (aiormq's future store).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import aiormq
from aiormq.abc import ChannelFrame
from pamqp import commands as spec
from pamqp.body import ContentBody
from pamqp.header import ContentHeader


@dataclass(frozen=True)
class Outgoing:
    body: bytes
    routing_key: str
    properties: spec.Basic.Properties


async def publish_together(
    channel: aiormq.Channel, exchange: str, messages: Sequence[Outgoing]
) -> list[BaseException | None]:
    """Publish `messages` in order (not mandatory) and wait for their confirmations; for each,
    None if the broker confirmed it, else the error (a nack, or the channel closing)."""
    if not channel.publisher_confirms:
        raise ValueError("the channel does not confirm publishes")
    frames: list[spec.Basic.Publish | ContentHeader | ContentBody] = []
    chunk = channel.max_content_size
    for message in messages:
        body = message.body
        frames.append(spec.Basic.Publish(exchange=exchange, routing_key=message.routing_key))
        frames.append(ContentHeader(properties=message.properties, body_size=len(body)))
        frames.extend(ContentBody(body[i : i + chunk]) for i in range(0, len(body), chunk))
    encoded = ChannelFrame.marshall(channel_number=channel.number, frames=frames)
    confirmations: list[asyncio.Future[object]] = []
    async with channel.lock:  # raises if the channel is closed
        # Cancelled while the writer's (bounded) queue is full, nothing was sent and no tag
        # was taken. Once it is queued, nothing awaits until the confirmations are in place:
        # the writer cannot have sent the frames yet, so no confirmation can have arrived.
        await channel.write_queue.put(encoded)
        for _ in messages:
            channel.delivery_tag += 1
            confirmation = channel.create_future()
            channel.confirmations[channel.delivery_tag] = confirmation
            confirmations.append(confirmation)
    results = await asyncio.gather(*confirmations, return_exceptions=True)
    return [result if isinstance(result, BaseException) else None for result in results]
