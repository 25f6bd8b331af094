"""One shared ICMP socket per address family for every ping of a probe process.

A socket per ping costs a socket, a bind and a close per echo, and on a raw socket every open
socket receives a copy of every ICMP packet of the host. One socket with a demultiplexer
(`EchoTable`) is several times faster. The socket is a datagram ICMP socket where the kernel
allows it (net.ipv4.ping_group_range, which also governs ICMPv6), else a raw socket (root or
CAP_NET_RAW).

Echoes in flight are bounded: beyond `max_in_flight`, `echo()` waits for a slot. Each echo has
its own timeout, after which it counts as lost (a late reply is then ignored).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import weakref

from pingtower.pinger.domain.ping import EchoTable, echo_request, parse_echo_reply

PAYLOAD = b"pingtower" + bytes(23)
MAX_IN_FLIGHT = 4096
RECEIVE_BUFFER = 1 << 20  # replies to a burst of echoes arrive together


class IcmpUnavailableError(OSError):
    pass


def open_icmp_socket(family: int = socket.AF_INET) -> tuple[socket.socket, bool]:
    """A non-blocking ICMP socket and whether it is raw (True) or datagram (False)."""
    protocol = socket.IPPROTO_ICMPV6 if family == socket.AF_INET6 else socket.IPPROTO_ICMP
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM, protocol)
        raw = False
    except PermissionError:
        try:
            sock = socket.socket(family, socket.SOCK_RAW, protocol)
            raw = True
        except PermissionError:
            raise IcmpUnavailableError(
                "ICMP needs root or CAP_NET_RAW (raw sockets), or a net.ipv4.ping_group_range "
                "that includes this process's group (datagram ICMP sockets)"
            ) from None
    sock.setblocking(False)
    return sock, raw


class EchoSocket:
    """Sends echoes on one ICMP socket and hands each reply to the echo that awaits it."""

    def __init__(self, family: int = socket.AF_INET, *, max_in_flight: int = MAX_IN_FLIGHT):
        self.family = family
        self._v6 = family == socket.AF_INET6
        self._loop = asyncio.get_running_loop()
        self._sock, self.raw = open_icmp_socket(family)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            self._sock.bind(("::", 0) if self._v6 else ("0.0.0.0", 0))
        except OSError:
            self._sock.close()
            raise
        # A datagram socket's identifier is its port, set by the kernel; a raw one's is ours.
        identifier = None if not self.raw else int.from_bytes(os.urandom(2), "big")
        self._table: EchoTable[asyncio.Future[float]] = EchoTable(
            identifier, first_sequence=int.from_bytes(os.urandom(2), "big")
        )
        self._slots = asyncio.Semaphore(max_in_flight)
        # Raw IPv4 sockets deliver the IP header; ICMPv6 and datagram sockets do not.
        self._ip_header = self.raw and not self._v6
        self._closed = False
        self._writable: asyncio.Future[None] | None = None
        self._loop.add_reader(self._sock.fileno(), self._on_readable)

    @property
    def in_flight(self) -> int:
        return len(self._table)

    async def echo(self, address: str, reply_within: float) -> float | None:
        """One echo to `address` (a numeric address of this socket's family): the round trip in
        milliseconds, or None when no reply came within `reply_within` seconds. (A timer per
        echo, not asyncio.timeout: it costs a fraction as much, which counts at 20,000/s.)"""
        async with self._slots:
            if self._closed:
                raise OSError("the ICMP socket is closed")
            waiter: asyncio.Future[float] = self._loop.create_future()
            sequence = self._table.add(address, waiter)
            try:
                packet = echo_request(self._table.identifier or 0, sequence, PAYLOAD, v6=self._v6)
                await self._send(packet, address)
                sent = time.perf_counter()
                timer = self._loop.call_later(reply_within, _expire, waiter)
                try:
                    received = await waiter
                finally:
                    timer.cancel()
            except TimeoutError:
                return None
            finally:
                self._table.forget(sequence)
            return (received - sent) * 1000

    async def _send(self, packet: bytes, address: str) -> None:
        while True:
            try:
                self._sock.sendto(packet, (address, 0))
                return
            except BlockingIOError:
                # The send buffer is full: every blocked sender waits for one writability
                # signal (uvloop has no loop.sock_sendto to do this for us).
                if self._writable is None or self._writable.done():
                    self._writable = self._loop.create_future()
                    self._loop.add_writer(self._sock.fileno(), self._on_writable)
                await asyncio.shield(self._writable)

    def _on_writable(self) -> None:
        self._loop.remove_writer(self._sock.fileno())
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def _on_readable(self) -> None:
        # Drain everything queued: one wake-up per burst of replies, not one per reply.
        while True:
            try:
                packet, source = self._sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # an ICMP error queued on the socket: the echo's timeout accounts for it
            received = time.perf_counter()
            reply = parse_echo_reply(packet, has_ip_header=self._ip_header, v6=self._v6)
            if reply is None:
                continue  # a raw socket also sees requests and other hosts' ICMP traffic
            waiter = self._table.match(reply[0], reply[1], source[0])
            if waiter is not None and not waiter.done():
                waiter.set_result(received)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._sock.fileno())
        self._loop.remove_writer(self._sock.fileno())
        if self._writable is not None and not self._writable.done():
            self._writable.set_exception(OSError("the ICMP socket is closed"))
        self._sock.close()


def _expire(waiter: asyncio.Future[float]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, EchoSocket]] = (
    weakref.WeakKeyDictionary()
)


def shared_echo_socket(family: int) -> EchoSocket:
    """The process's echo socket for `family` on the running loop, opened on first use.
    IcmpUnavailableError when neither a datagram nor a raw ICMP socket may be opened."""
    loop = asyncio.get_running_loop()
    sockets = _shared.setdefault(loop, {})
    echo_socket = sockets.get(family)
    if echo_socket is None or echo_socket._closed:
        echo_socket = sockets[family] = EchoSocket(family)
    return echo_socket


def close_shared_echo_sockets() -> None:
    """Closes the running loop's echo sockets (the probe does this when it stops)."""
    for echo_socket in _shared.pop(asyncio.get_running_loop(), {}).values():
        echo_socket.close()
