"""Acknowledging a channel's deliveries in as few frames as possible, never one too early.

One `basic.ack` per message was a visible share of a consumer's CPU and, on a quorum queue, of
the broker's: each ack is a command in the queue's replicated log, while one ack with
`multiple=True` settles every delivery up to its tag in one command (the broker's CPU for
consuming and acknowledging a message fell from about 0.1 to 0.03 ms; bench/README.md, round 5).

`multiple=True` settles every unsettled delivery at or below the tag, so it may only be sent for
a tag below which every delivery is settled or finished. The ledger holds the deliveries of one
channel (their tags count up from 1 on every channel), and takes as one multiple ack the
longest run of finished deliveries from the bottom. A delivery that finished above one still
running waits for the run to reach it, but only for a while: past `hold_limit` such deliveries
(or when forced, which the caller does after a short delay) they are acknowledged one by one,
since every unacknowledged delivery holds one of the consumer's prefetch slots.

A tag missing from the ledger (never reported as delivered) stops the run as a running one does:
a consumer that reports deliveries out of order, or a channel whose tags skip, gets single acks,
never an acknowledgement of a message it did not handle.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass


@dataclass(frozen=True)
class Ack:
    tag: int
    multiple: bool


class AckLedger:
    """The unsettled deliveries of one channel and which of them may be acknowledged now."""

    def __init__(self, *, hold_limit: int) -> None:
        self.hold_limit = max(1, hold_limit)
        self._floor = 0  # every tag up to this one is settled or covered by an ack sent
        self._unsettled: list[int] = []  # heap of the tags delivered above the floor
        self._finished: set[int] = set()  # handled, not yet acknowledged
        self._settled: set[int] = set()  # settled on their own (nack, reject, single ack)

    @property
    def held(self) -> int:
        """Finished deliveries not yet acknowledged."""
        return len(self._finished)

    def delivered(self, tag: int) -> None:
        heapq.heappush(self._unsettled, tag)

    def finished(self, tag: int) -> None:
        """The delivery's work is done: it may be acknowledged."""
        self._finished.add(tag)

    def settled(self, tag: int) -> None:
        """The delivery was settled on its own (its nack or reject already sent)."""
        self._settled.add(tag)

    def take(self, *, force: bool = False) -> list[Ack]:
        """The acks to send now; the deliveries they cover are forgotten."""
        acks: list[Ack] = []
        covered: int | None = None
        unsettled = self._unsettled
        while unsettled and unsettled[0] == self._floor + 1:
            tag = unsettled[0]
            if tag in self._finished:
                self._finished.discard(tag)
                covered = tag
            elif tag in self._settled:
                self._settled.discard(tag)
            else:
                break
            heapq.heappop(unsettled)
            self._floor = tag
        if covered is not None:
            acks.append(Ack(covered, multiple=True))
        if self._finished and (force or len(self._finished) >= self.hold_limit):
            for tag in sorted(self._finished):
                acks.append(Ack(tag, multiple=False))
            # Acknowledged now, they stay in the heap until the run from the bottom reaches
            # them, so that no later multiple ack is taken across a gap.
            self._settled.update(self._finished)
            self._finished.clear()
        return acks
