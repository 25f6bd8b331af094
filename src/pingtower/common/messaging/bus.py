"""The bus interface that both transports (RabbitMQ, in-process) implement.

Events are published to one topic exchange, routed by their type. Each consuming service names a
consumer (its queue) and the routing keys it binds. Handlers take a batch of envelopes and must
commit their effect before they return: the transport acknowledges after the handler returns, so a
crash before that means a redelivery, and the consumer's inbox makes a redelivery harmless.

Check jobs travel apart, on one work queue per region, to competing probe consumers.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from pingtower.common.events import Envelope

BatchHandler = Callable[[Sequence[Envelope]], Awaitable[None]]
JobHandler = Callable[[Envelope], Awaitable[None]]


@dataclass(frozen=True)
class UnpublishedJob:
    """A check job the transport did not take, and why."""

    job: Envelope
    region: str
    error: BaseException


class Bus(abc.ABC):
    @abc.abstractmethod
    async def start(self) -> None:
        """Connect and declare the topology; consumers subscribed before start begin consuming."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop consuming, let in-flight handlers finish, disconnect."""

    @abc.abstractmethod
    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Publish events; returns only when the broker has confirmed every one of them."""

    async def publish_in_turn(self, envelopes: Sequence[Envelope]) -> asyncio.Future[None]:
        """Publish events after those of every earlier call, returning a future that settles
        as `publish` would return (or raise). A transport that can have several publishes in
        flight in order returns once the events are on their way; the default publishes them
        before it returns (RabbitMQ: concurrent publishes may interleave)."""
        published: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self.publish(envelopes)
        published.set_result(None)
        return published

    async def hand_over(self, envelopes: Sequence[Envelope]) -> None:
        """Publish events whose loss in a stop the caller accepts (a probe's check results: a
        lost one is that interval's check, as when a probe dies mid-check); returns once the
        transport holds them. On RabbitMQ that is the broker's confirm, as `publish`; the
        in-process bus holds them in memory, queued for their consumers, without waiting for
        their commits while its queues are short."""
        await self.publish(envelopes)

    @abc.abstractmethod
    async def publish_job(self, job: Envelope, region: str) -> None:
        """Put a check job on the work queue of `region`."""

    async def publish_jobs(self, jobs: Sequence[tuple[Envelope, str]]) -> list[UnpublishedJob]:
        """Put check jobs, each on the work queue of its region, with their confirmations
        awaited together rather than one round trip per job.

        A job that was not taken does not fail the others: it is returned, with its error, for
        the caller to retry or count. Returns an empty list when every job was taken.

        Both transports override this; the default, one `publish_job` after another, keeps a
        bus that only wraps another one (tests do) working.
        """
        unpublished: list[UnpublishedJob] = []
        for job, region in jobs:
            try:
                await self.publish_job(job, region)
            except Exception as exc:
                unpublished.append(UnpublishedJob(job, region, exc))
        return unpublished

    @abc.abstractmethod
    def subscribe(
        self,
        consumer: str,
        routing_keys: Sequence[str],
        handler: BatchHandler,
        *,
        max_batch: int = 100,
        broadcast: bool = False,
    ) -> None:
        """Deliver events whose type matches one of `routing_keys` (topic patterns) to `handler`.

        Several processes subscribing with the same `consumer` share its queue (competing
        consumers); different consumers each get every matching event. With `broadcast`, every
        process gets its own copy in a queue that lives only as long as the process (for live
        views such as the dashboard's event stream).
        """

    @abc.abstractmethod
    def consume_jobs(self, region: str, handler: JobHandler, *, concurrency: int) -> None:
        """Run `handler` for the jobs of `region`, at most `concurrency` at a time."""

    @abc.abstractmethod
    async def check(self) -> None:
        """Raise if the transport cannot currently publish (for readiness)."""


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: `*` is exactly one word, `#` is zero or more words."""
    return _match(pattern.split("."), key.split("."))


def _match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head in ("*", words[0])) and _match(rest, words[1:])


async def deliver_batch(
    batch: Sequence[Envelope],
    handler: BatchHandler,
    on_failure: Callable[[Envelope, BaseException], Awaitable[None]],
) -> None:
    """Give `batch` to the handler; if it fails, retry message by message so that one bad
    message does not hold back the others, and report each one that still fails."""
    try:
        await handler(batch)
        return
    except Exception as exc:
        if len(batch) == 1:
            await on_failure(batch[0], exc)
            return
    for envelope in batch:
        try:
            await handler([envelope])
        except Exception as exc:
            await on_failure(envelope, exc)
