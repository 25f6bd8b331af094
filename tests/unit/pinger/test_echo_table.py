"""The demultiplexer of a shared ICMP socket: which reply belongs to which echo in flight."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pingtower.pinger.checks.icmp import IcmpCheck
from pingtower.pinger.domain.monitor import InvalidSettingError
from pingtower.pinger.domain.ping import (
    SEQUENCES,
    EchoTable,
    EchoTableFullError,
    echo_request,
    parse_echo_reply,
)


def test_a_raw_socket_reply_matches_by_identifier_and_sequence() -> None:
    table: EchoTable[str] = EchoTable(identifier=4242)
    sequence = table.add("127.0.0.1", "echo a")
    assert table.match(4243, sequence, "127.0.0.1") is None  # another process's ping
    assert table.match(4242, sequence + 1, "127.0.0.1") is None
    assert table.match(4242, sequence, "127.0.0.1") == "echo a"
    assert table.match(4242, sequence, "127.0.0.1") is None  # answered once
    assert len(table) == 0


def test_a_datagram_socket_reply_matches_by_sequence_and_destination() -> None:
    # The kernel rewrote the identifier to the socket's port: whatever it is, it is ours.
    table: EchoTable[str] = EchoTable(identifier=None)
    to_a = table.add("192.0.2.1", "echo a")
    to_b = table.add("192.0.2.2", "echo b")
    assert table.match(51000, to_a, "192.0.2.2") is None  # a reply from elsewhere
    assert table.match(51000, to_b, "192.0.2.2") == "echo b"
    assert table.match(51000, to_a, "192.0.2.1") == "echo a"


def test_echoes_in_flight_have_distinct_sequence_numbers_that_wrap() -> None:
    table: EchoTable[int] = EchoTable(identifier=1, first_sequence=SEQUENCES - 2)
    sequences = [table.add("::1", n) for n in range(4)]
    assert sequences == [SEQUENCES - 2, SEQUENCES - 1, 0, 1]
    assert table.forget(0) == 2
    assert table.forget(0) is None


@given(st.lists(st.booleans(), max_size=300), st.integers(0, SEQUENCES - 1))
def test_a_sequence_in_flight_is_never_given_twice(forget: list[bool], first: int) -> None:
    table: EchoTable[int] = EchoTable(identifier=1, first_sequence=first)
    in_flight: set[int] = set()
    for step, drop in enumerate(forget):
        if drop and in_flight:
            assert table.forget(in_flight.pop()) is not None
        sequence = table.add("127.0.0.1", step)
        assert sequence not in in_flight
        in_flight.add(sequence)
    assert len(table) == len(in_flight)


def test_the_table_refuses_more_echoes_than_sequence_numbers() -> None:
    table: EchoTable[None] = EchoTable(identifier=None)
    for _ in range(SEQUENCES):
        table.add("127.0.0.1", None)
    with pytest.raises(EchoTableFullError):
        table.add("127.0.0.1", None)


def test_icmpv6_echoes_and_replies() -> None:
    request = echo_request(7, 9, b"x", v6=True)
    assert request[0] == 128
    assert request[2:4] == b"\0\0"  # the kernel computes ICMPv6 checksums
    reply = bytes([129]) + request[1:]
    assert parse_echo_reply(reply, has_ip_header=False, v6=True) == (7, 9)
    assert parse_echo_reply(request, has_ip_header=False, v6=True) is None
    assert parse_echo_reply(reply, has_ip_header=False) is None  # not an ICMPv4 reply


@pytest.mark.parametrize(
    ("target", "normalised"),
    [("127.0.0.1", "127.0.0.1"), ("::1", "::1"), ("[::1]", "::1"), ("example.com", "example.com")],
)
def test_icmp_targets_are_host_names_or_ip_addresses(target: str, normalised: str) -> None:
    assert IcmpCheck().validate_target(target) == normalised


@pytest.mark.parametrize("target", ["", "http://example.com", "host:80", "a b"])
def test_other_icmp_targets_are_refused_naming_the_field(target: str) -> None:
    with pytest.raises(InvalidSettingError) as error:
        IcmpCheck().validate_target(target)
    assert error.value.field == "target"
