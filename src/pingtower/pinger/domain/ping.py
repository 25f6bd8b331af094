"""ICMP echo: the packet format, the table of echoes in flight on a shared socket, and the
summary of one check's round trips. Pure code, no I/O."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Generic, TypeVar

ECHO_REQUEST = 8
ECHO_REPLY = 0
ECHO_REQUEST_V6 = 128
ECHO_REPLY_V6 = 129
SEQUENCES = 1 << 16

_HEADER = struct.Struct("!BBHHH")


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(identifier: int, sequence: int, payload: bytes, *, v6: bool = False) -> bytes:
    """An echo request. ICMPv6 checksums cover a pseudo-header with the addresses, which the
    kernel fills in for ICMPv6 sockets (raw and datagram); so they go out as zero."""
    if v6:
        return _HEADER.pack(ECHO_REQUEST_V6, 0, 0, identifier, sequence) + payload
    header = _HEADER.pack(ECHO_REQUEST, 0, 0, identifier, sequence)
    check = checksum(header + payload)
    return _HEADER.pack(ECHO_REQUEST, 0, check, identifier, sequence) + payload


def parse_echo_reply(
    packet: bytes, *, has_ip_header: bool, v6: bool = False
) -> tuple[int, int] | None:
    """(identifier, sequence) of an echo reply, or None for any other packet. Raw IPv4 sockets
    deliver the IPv4 header too; datagram ICMP sockets and ICMPv6 sockets do not."""
    offset = 0
    if has_ip_header:
        if len(packet) < 20:
            return None
        offset = (packet[0] & 0x0F) * 4
    if len(packet) < offset + 8:
        return None
    kind, code, _check, identifier, sequence = _HEADER.unpack_from(packet, offset)
    if kind != (ECHO_REPLY_V6 if v6 else ECHO_REPLY) or code != 0:
        return None
    return identifier, sequence


Waiter = TypeVar("Waiter")


class EchoTableFullError(Exception):
    pass


class EchoTable(Generic[Waiter]):
    """The echoes in flight on one shared ICMP socket, each with whatever waits for its reply.

    Every echo in flight has its own sequence number, so a reply finds its echo by sequence.
    On a raw socket we choose the identifier and see every ICMP packet of the host, so a reply
    must also carry our identifier. On a datagram ICMP socket the kernel rewrites the identifier
    to the socket's local port (and hands us only replies to that socket), so the identifier
    we would compare is not ours to choose: there a reply must instead come from the address
    the echo went to.
    """

    def __init__(self, identifier: int | None, *, first_sequence: int = 0) -> None:
        self.identifier = identifier  # None: a datagram socket, the kernel sets it
        self._next = first_sequence % SEQUENCES
        self._in_flight: dict[int, tuple[str, Waiter]] = {}

    def __len__(self) -> int:
        return len(self._in_flight)

    def add(self, destination: str, waiter: Waiter) -> int:
        """Registers an echo to `destination`; returns its sequence number."""
        if len(self._in_flight) >= SEQUENCES:
            raise EchoTableFullError("every sequence number is in flight")
        sequence = self._next
        while sequence in self._in_flight:
            sequence = (sequence + 1) % SEQUENCES
        self._next = (sequence + 1) % SEQUENCES
        self._in_flight[sequence] = (destination, waiter)
        return sequence

    def match(self, identifier: int, sequence: int, source: str) -> Waiter | None:
        """The waiter of the echo this reply answers (and forgets the echo), or None for a
        reply that is not ours."""
        entry = self._in_flight.get(sequence)
        if entry is None:
            return None
        if self.identifier is None:
            if entry[0] != source:
                return None
        elif identifier != self.identifier:
            return None
        del self._in_flight[sequence]
        return entry[1]

    def forget(self, sequence: int) -> Waiter | None:
        """Drops an echo whose reply is no longer awaited (timed out, or its sender gave up)."""
        entry = self._in_flight.pop(sequence, None)
        return None if entry is None else entry[1]


@dataclass(frozen=True)
class PingSummary:
    sent: int
    received: int
    rtt_min_ms: float | None
    rtt_avg_ms: float | None
    rtt_max_ms: float | None

    @property
    def loss_percent(self) -> float:
        return 100.0 * (self.sent - self.received) / self.sent if self.sent else 100.0


def summarise(sent: int, rtts_ms: list[float]) -> PingSummary:
    if not rtts_ms:
        return PingSummary(sent, 0, None, None, None)
    return PingSummary(
        sent,
        len(rtts_ms),
        round(min(rtts_ms), 3),
        round(sum(rtts_ms) / len(rtts_ms), 3),
        round(max(rtts_ms), 3),
    )
