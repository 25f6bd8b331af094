"""ICMP echo packets and round-trip summaries."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from pingtower.pinger.domain.ping import (
    checksum,
    echo_request,
    parse_echo_reply,
    summarise,
)


def test_checksum_of_the_rfc_1071_example() -> None:
    data = bytes([0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7])
    assert checksum(data) == ~0xDDF2 & 0xFFFF


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=64))
def test_an_echo_request_carries_a_valid_checksum(
    identifier: int, sequence: int, payload: bytes
) -> None:
    packet = echo_request(identifier, sequence, payload)
    assert checksum(packet) == 0
    assert struct.unpack("!BBHHH", packet[:8])[3:] == (identifier, sequence)


def reply(identifier: int, sequence: int) -> bytes:
    packet = bytearray(echo_request(identifier, sequence, b"x"))
    packet[0] = 0  # echo reply
    return bytes(packet)


def test_replies_are_parsed_with_and_without_the_ip_header() -> None:
    ip_header = bytes([0x45]) + bytes(19)
    assert parse_echo_reply(reply(7, 9), has_ip_header=False) == (7, 9)
    assert parse_echo_reply(ip_header + reply(7, 9), has_ip_header=True) == (7, 9)


def test_other_icmp_packets_are_not_replies() -> None:
    assert parse_echo_reply(echo_request(7, 9, b""), has_ip_header=False) is None
    assert parse_echo_reply(b"\0\0", has_ip_header=False) is None


def test_summary_of_round_trips_and_loss() -> None:
    summary = summarise(4, [1.0, 3.0, 2.0])
    assert summary.received == 3
    assert summary.loss_percent == 25.0
    assert (summary.rtt_min_ms, summary.rtt_avg_ms, summary.rtt_max_ms) == (1.0, 2.0, 3.0)
    assert summarise(3, []).loss_percent == 100.0
