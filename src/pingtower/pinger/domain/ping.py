"""ICMP echo: the packet format and the summary of one check's round trips. Pure functions."""

from __future__ import annotations

import struct
from dataclasses import dataclass

ECHO_REQUEST = 8
ECHO_REPLY = 0


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(identifier: int, sequence: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, identifier, sequence)
    check = checksum(header + payload)
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, check, identifier, sequence) + payload


def parse_echo_reply(packet: bytes, *, has_ip_header: bool) -> tuple[int, int] | None:
    """(identifier, sequence) of an echo reply, or None for any other packet. Raw sockets
    deliver the IPv4 header too; datagram ICMP sockets do not."""
    if has_ip_header:
        if len(packet) < 20:
            return None
        packet = packet[(packet[0] & 0x0F) * 4 :]
    if len(packet) < 8:
        return None
    kind, code, _check, identifier, sequence = struct.unpack("!BBHHH", packet[:8])
    if kind != ECHO_REPLY or code != 0:
        return None
    return identifier, sequence


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
