"""A lean HTTP/1.1 client for checks: one request per fresh connection, read with httptools'
parser (llhttp).

Why not aiohttp: a check needs none of its pooling, cookies, streaming or decompression, and
those cost about 0.25 ms of CPU per request on loopback, more than the rest of the check. This
client does exactly what a check needs, and times each phase itself: DNS (the system resolver,
every address judged by the egress policy before any connect), TCP connect, TLS handshake
(loop.start_tls on the connected socket, so it is timed apart), first byte, total. Redirects are
followed here, hop by hop, through the same guarded resolution.

A plain-HTTP hop runs on a bare non-blocking socket (`_PlainExchange`), not on a transport and
protocol: the request goes out as soon as the connect returns, readiness comes from one epoll set
shared by the loop's exchanges, and deadlines from one timer per tick (`_Waits`); the client
keeps the caller's deadline itself, cheaper than `asyncio.timeout` around it. HTTPS hops keep
the loop's transport, for start_tls.

What repeats from check to check is done once: a URL is parsed into its request line, Host
header and address (if it is one) once per URL (`_target`, bounded), and a `Request` sent again
keeps the bytes of its first hop (`Request.first_hop`). A connection the server
has not closed by the time the response is in is closed with a reset (SO_LINGER 0), so the
prober never holds sockets in TIME_WAIT, however many checks it runs; one whose close has
already been read is closed normally (nothing is left waiting on our side, and setting the
option costs about 5 µs).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import functools
import ipaddress
import math
import os
import re
import select
import socket
import ssl
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, unquote, urljoin, urlsplit

import httptools

from pingtower.common.egress import Networks, check_address
from pingtower.pinger.checks.base import ms
from pingtower.pinger.checks.stream_sockets import bare_nonblocking_stream, reset_on_close

USER_AGENT = b"PingTower-Check/1"
REDIRECTS = frozenset({301, 302, 303, 307, 308})
_URL_SAFE = "/%?=&;:@!$'()*+,~-._[]"
_CONNECTING = frozenset({0, errno.EINPROGRESS})
_NONE_GIVEN: frozenset[str] = frozenset()  # the header names of a request without headers
# URLs whose parsed form is kept: a probe checks the same URLs over and over. A fleet with more
# distinct URLs than this parses the others on each check, as every check did before.
TARGETS_CACHED = 16_384
# Addresses a client remembers as allowed by its egress policy; beyond, it starts again.
ADDRESSES_ALLOWED = 16_384


class HttpClientError(Exception):
    """A failure with the check's error kind: dns, connect, tls, protocol or redirect."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class Response:
    status: int
    head: bytes  # the response as received up to its header section's end, or a little past it
    body: bytes
    too_large: bool  # the body went past the cap; `body` holds the first cap + 1 bytes
    cert_expires_at: datetime | None
    phases_ms: dict[str, float] = field(default_factory=dict)  # of the first hop

    @functools.cached_property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The header fields as received, read from `head` on first use."""
        return header_fields(self.head)

    @functools.cached_property
    def headers(self) -> dict[str, str]:
        """By lower-case name; a repeated header's values joined with ", ". Decoded on first
        use: most checks need no header (it was 5 µs per check)."""
        headers: dict[str, str] = {}
        for name, value in self.raw_headers:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        return headers

    @property
    def charset(self) -> str | None:
        for part in self.headers.get("content-type", "").split(";")[1:]:
            name, _, value = part.strip().partition("=")
            if name.lower() == "charset" and value:
                return value.strip('"')
        return None


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs 3 µs per check
class Request:
    """What to request. May be shared between checks (a monitor's checks make the same
    request): the client changes nothing but `first_hop`, and the caller must change nothing
    once it has been sent."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    max_body: int
    verify_tls: bool
    follow_redirects: bool
    max_redirects: int
    # The first hop's bytes (head and body), kept by the client when it first sends them.
    first_hop: bytes | None = None


class _HeaderFields:
    __slots__ = ("fields",)

    def __init__(self) -> None:
        self.fields: list[tuple[bytes, bytes]] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value))


def header_fields(head: bytes) -> list[tuple[bytes, bytes]]:
    """The header fields of a response's head (it may go on into the body), by the same parser
    that read the response."""
    fields = _HeaderFields()
    # Past the head, the body may be cut short or (over the cap) left unchecked: not our concern.
    with contextlib.suppress(httptools.HttpParserError):
        httptools.HttpResponseParser(fields).feed_data(head)
    return fields.fields


class _ResponseReader:
    """Parses one response with httptools and settles `done` once it is complete or has
    failed. It lets go of its parser once the response is complete: the parser refers back to
    it, and such cycles are freed only by the garbage collector, whose collections they made
    several times more frequent."""

    __slots__ = (
        "body",
        "done",
        "first_byte",
        "head",
        "headers_complete",
        "max_body",
        "parser",
        "peer_closed",
        "received",
        "status",
        "too_large",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, max_body: int, head: bool) -> None:
        self.parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self.done: asyncio.Future[None] = loop.create_future()
        # What came in until the header section was complete: the fields are read from it only
        # when needed (`header_fields`); most checks need none, and a parser callback per field
        # cost 3 µs per check.
        self.received: list[bytes] = []
        self.body = bytearray()
        self.max_body = max_body
        self.head = head
        self.headers_complete = False
        self.too_large = False
        self.first_byte: float | None = None
        self.peer_closed = False  # the server's FIN (or reset) is in
        self.status = 0

    def feed(self, data: bytes) -> None:
        if self.first_byte is None:
            self.first_byte = time.perf_counter()
        parser = self.parser
        if parser is None:  # the response is complete: the rest is not read
            return
        if not self.headers_complete:
            self.received.append(data)
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(HttpClientError("protocol", f"malformed response: {exc}"))

    def closed(self, exc: Exception | None) -> None:
        """The connection has ended (`exc`: how, if not by the server's orderly close)."""
        self.peer_closed = True
        if self.done.done():
            return
        if self.headers_complete and self._ends_at_close():
            self._finish(None)
        elif isinstance(exc, ssl.SSLError):
            self._finish(HttpClientError("tls", str(exc)))
        else:
            self._finish(HttpClientError("protocol", "connection closed before the response"))

    def _ends_at_close(self) -> bool:
        names = {name.lower() for name, _ in header_fields(self.head_bytes())}
        return b"content-length" not in names and b"transfer-encoding" not in names

    def head_bytes(self) -> bytes:
        received = self.received
        return received[0] if len(received) == 1 else b"".join(received)

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.headers_complete = True
        if self.parser is not None:
            self.status = self.parser.get_status_code()
        if self.head:
            self._finish(None)  # a HEAD response has no body, whatever its Content-Length says

    def on_body(self, body: bytes) -> None:
        self.body += body
        if len(self.body) > self.max_body:
            self.too_large = True
            del self.body[self.max_body + 1 :]
            self._finish(None)

    def on_message_complete(self) -> None:
        self._finish(None)

    def _finish(self, error: Exception | None) -> None:
        self.parser = None  # still alive while it calls us: feed_data holds it
        if self.done.done():
            return
        if error is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(error)


class _ConnectError(Exception):
    """The connection to one address failed; the next address may be tried."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error


READ, WRITE = 1, 4  # the events an exchange waits for (select.EPOLLIN and EPOLLOUT)
# The server's FIN, reported by epoll with the readiness (EPOLLRDHUP; 0 where there is none).
# A socket closed after it leaves nothing in TIME_WAIT on our side, so it needs no reset: the
# setsockopt that makes one is a system call, and CPython tries two other argument forms
# before the one that fits (two TypeErrors formatted: about 8,000 instructions per check).
PEER_CLOSED = getattr(select, "EPOLLRDHUP", 0)


class _Waits:
    """What the plain exchanges on one event loop wait for: their sockets' readiness and their
    deadlines.

    With epoll (Linux), the sockets are in one epoll set of our own that the event loop
    watches as a single reader: a socket costs one epoll_ctl per wait (one-shot: an event
    disarms it, so an exchange that has ended hears nothing more, and closing the socket takes
    it out of the set), and one epoll_wait serves every socket that became ready in a loop
    iteration. uvloop's add_reader and remove_reader per socket cost about five system calls
    (a poll handle is made, checked and torn down each time) and two weak-dictionary lookups
    per check. Elsewhere the loop's own reader and writer callbacks serve.

    Deadlines are rounded up to a tick (`DEADLINE_TICK`), and the exchanges due at one tick
    share one loop timer: a timer per exchange (call_at and cancel, a libuv timer handle made
    and torn down) was 4 % of a check's CPU. A timeout fires up to one tick late."""

    __slots__ = ("__weakref__", "callbacks", "due", "epoll")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Holds no reference to the loop: the loop holds this (through its reader and timers)
        # and is the weak key that finds it.
        self.callbacks: dict[int, Callable[[int], None]] = {}
        self.due: dict[int, set[_PlainExchange]] = {}  # by tick
        self.epoll = select.epoll() if hasattr(select, "epoll") else None
        if self.epoll is not None:
            loop.add_reader(self.epoll.fileno(), self._ready)

    def expire_at(
        self, loop: asyncio.AbstractEventLoop, deadline: float, exchange: _PlainExchange
    ) -> int:
        """Calls `exchange.timed_out()` once the loop's clock has passed `deadline` (unless
        `exchange` is taken off first); returns the tick to take it off with."""
        tick = math.ceil(deadline / DEADLINE_TICK)
        exchanges = self.due.get(tick)
        if exchanges is None:
            exchanges = self.due[tick] = set()
            loop.call_at(tick * DEADLINE_TICK, self._expire, tick)
        exchanges.add(exchange)
        return tick

    def unexpire(self, tick: int, exchange: _PlainExchange) -> None:
        exchanges = self.due.get(tick)
        if exchanges is not None:
            exchanges.discard(exchange)

    def _expire(self, tick: int) -> None:
        for exchange in self.due.pop(tick, ()):
            exchange.timed_out()

    def arm(self, fd: int, events: int, callback: Callable[[int], None]) -> None:
        """Calls `callback(events)` once when `fd` is ready for any of `events`."""
        registered = fd in self.callbacks
        self.callbacks[fd] = callback
        if self.epoll is not None:
            if registered:
                self.epoll.modify(fd, events | _ONESHOT)
            else:
                self.epoll.register(fd, events | _ONESHOT)
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(fd)
        loop.remove_writer(fd)
        if events & READ:
            loop.add_reader(fd, self._fire, fd, READ)
        if events & WRITE:
            loop.add_writer(fd, self._fire, fd, WRITE)

    def forget(self, fd: int) -> None:
        """No more callbacks for `fd`, which its owner is about to close."""
        if self.callbacks.pop(fd, None) is not None and self.epoll is None:
            loop = asyncio.get_running_loop()
            loop.remove_reader(fd)
            loop.remove_writer(fd)

    def _ready(self) -> None:
        assert self.epoll is not None
        callbacks = self.callbacks
        for fd, events in self.epoll.poll(0):
            callback = callbacks.get(fd)
            if callback is not None:  # None: its exchange has ended, the socket is closing
                callback(events)

    def _fire(self, fd: int, events: int) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(fd)  # one-shot, as with epoll
        loop.remove_writer(fd)
        callback = self.callbacks.get(fd)
        if callback is not None:
            callback(events)


_ONESHOT = getattr(select, "EPOLLONESHOT", 0)
DEADLINE_TICK = 0.02  # seconds
_WAITS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Waits] = weakref.WeakKeyDictionary()
_LAST_WAITS: list[tuple[weakref.ref[asyncio.AbstractEventLoop], _Waits]] = []


def _waits(loop: asyncio.AbstractEventLoop) -> _Waits:
    # The last loop's first: a weak dictionary lookup makes a weak reference each time.
    if _LAST_WAITS and _LAST_WAITS[0][0]() is loop:
        return _LAST_WAITS[0][1]
    waits = _WAITS.get(loop)
    if waits is None:
        waits = _WAITS[loop] = _Waits(loop)
    _LAST_WAITS[:] = [(weakref.ref(loop), waits)]
    return waits


class _PlainExchange(_ResponseReader):
    """One request over a plain connection on a bare non-blocking socket, driven by its loop's
    `_Waits`: no transport, no protocol, one future per hop (uvloop's create_connection and its
    transport were most of the client's CPU).

    The request is sent as soon as the connect returns: on a loopback or LAN target the
    handshake is usually over by then; if it is not, `send` says so (EAGAIN) and the exchange
    waits for the socket to be writable, which says the connect's outcome."""

    __slots__ = ("connected", "fd", "out", "sock", "tick", "waits")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.SocketType,
        out: bytes,
        max_body: int,
        head: bool,
    ) -> None:
        super().__init__(loop, max_body, head)
        self.waits = _waits(loop)
        self.sock = sock
        self.fd = sock.fileno()
        self.out = out  # what is still to be sent
        self.connected: float | None = None
        self.tick: int | None = None  # when the deadline is kept

    def start(self, loop: asyncio.AbstractEventLoop, deadline: float | None) -> None:
        if deadline is not None:
            self.tick = self.waits.expire_at(loop, deadline, self)
        self._send()

    def _send(self) -> None:
        now = time.perf_counter()
        try:
            while self.out:
                sent = self.sock.send(self.out)
                self.out = self.out[sent:]  # a copy, but only of a large body the kernel split
        except (BlockingIOError, InterruptedError):
            # Connecting: the connect's outcome; sending: room to send, or an early answer.
            self.waits.arm(
                self.fd, WRITE if self.connected is None else WRITE | READ | PEER_CLOSED, self._on
            )
            return
        except OSError as exc:
            self._finish(_ConnectError(exc) if self.connected is None else _protocol_error(exc))
            return
        if self.connected is None:
            self.connected = now
        self.waits.arm(self.fd, READ | PEER_CLOSED, self._on)

    def _on(self, events: int) -> None:
        if self.connected is None:
            error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                self._finish(_ConnectError(OSError(error, os.strerror(error))))
                return
            self.connected = time.perf_counter()
            self._send()
            return
        if events & PEER_CLOSED:
            self.peer_closed = True  # the FIN is in, even if recv has not read up to it
        if events & ~WRITE:  # readable, or an error or hang-up that recv will report
            self._receive()
            if self.done.done():
                return
        if self.out:
            self._send()
        else:
            self.waits.arm(self.fd, READ | PEER_CLOSED, self._on)

    def _receive(self) -> None:
        try:
            data = self.sock.recv(65_536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.closed(exc)
            return
        if data:
            self.feed(data)
        else:
            self.closed(None)

    def timed_out(self) -> None:
        self.tick = None
        self._finish(TimeoutError())

    def _finish(self, error: Exception | None) -> None:
        super()._finish(error)
        self.stop()

    def stop(self) -> None:
        """No more callbacks: the response is in, or has failed, or its waiter was cancelled."""
        self.waits.forget(self.fd)
        if self.tick is not None:
            self.waits.unexpire(self.tick, self)
            self.tick = None


def _protocol_error(exc: OSError) -> HttpClientError:
    return HttpClientError("protocol", f"connection failed while sending: {exc.strerror or exc}")


class _ResponseProtocol(_ResponseReader, asyncio.Protocol):
    """Reads one response over a transport (TLS). It lets go of its transport once the
    connection is lost (another cycle the garbage collector would have to find)."""

    __slots__ = ("transport",)

    def __init__(self, loop: asyncio.AbstractEventLoop, max_body: int, head: bool) -> None:
        super().__init__(loop, max_body, head)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.feed(data)

    def eof_received(self) -> None:
        self.peer_closed = True  # returning None lets the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.closed(exc)


@functools.cache
def _unverified_context() -> ssl.SSLContext:
    # Built on first use: loading the trust store takes about 0.1 s of CPU.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 field names


def header_problem(name: str, value: str) -> str | None:
    """Why a header may not be sent as given (it could end the header early and smuggle in
    another one), or None."""
    if not _TOKEN.match(name):
        return f"header name {name!r} is not a token"
    if any(c in value for c in "\r\n\0"):
        return f"header {name!r} has a line break in its value"
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return f"header {name!r} has characters outside Latin-1"
    return None


def _encode_header(name: str, value: str) -> bytes:
    problem = header_problem(name, value)
    if problem is not None:
        raise HttpClientError("protocol", problem)
    return f"{name}: {value}\r\n".encode("latin-1")


@dataclass(frozen=True, slots=True)
class _Target:
    """What a request needs from its URL."""

    secure: bool
    host: str  # for the resolver and the TLS server name
    port: int
    literal: tuple[int, str] | None  # (family, address) when the host is an IP address
    path: bytes  # the request target: path and query, percent-encoded where needed
    host_line: bytes  # "Host: ...\r\n"
    url_credentials: bytes | None  # "Authorization: Basic ...\r\n" from user:password@


@functools.lru_cache(maxsize=TARGETS_CACHED)
def _target(url: str) -> _Target:
    """`url` parsed for a request; HttpClientError("protocol") if it cannot be requested (not
    cached: lru_cache keeps no exceptions)."""
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    host = parts.hostname
    if not host or parts.scheme not in ("http", "https"):
        raise HttpClientError("protocol", f"not an HTTP URL: {url[:200]}")
    try:
        explicit_port = parts.port
    except ValueError:
        raise HttpClientError("protocol", "the URL has a bad port") from None
    default_port = 443 if secure else 80
    port = explicit_port or default_port
    try:
        # An address needs no resolver (uvloop would still send it to a thread).
        address = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    else:
        literal = (socket.AF_INET6 if address.version == 6 else socket.AF_INET, str(address))
    # Like a browser: characters a request line may not hold are percent-encoded, escapes
    # the user wrote are kept.
    path = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""), safe=_URL_SAFE)
    named = host if host.isascii() else host.encode("idna").decode()
    if ":" in named:
        named = f"[{named}]"
    if explicit_port and explicit_port != default_port:
        named = f"{named}:{explicit_port}"
    credentials = None
    if parts.username is not None:
        token = base64.b64encode(
            f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        ).decode()
        credentials = f"Authorization: Basic {token}\r\n".encode()
    return _Target(
        secure=secure,
        host=host,
        port=port,
        literal=literal,
        path=path.encode("ascii"),
        host_line=b"Host: " + named.encode() + b"\r\n",
        url_credentials=credentials,
    )


def _reset(transport: asyncio.BaseTransport) -> None:
    """Makes the transport's close a reset (`reset_on_close`)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        reset_on_close(sock)


def _cert_expiry(transport: asyncio.BaseTransport) -> datetime | None:
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    not_after = cert.get("notAfter") if cert else None
    if not isinstance(not_after, str):
        return None
    return datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), UTC)


class HttpClient:
    """Makes check requests under an egress policy; holds no connections, so one per check."""

    def __init__(
        self,
        *,
        allow_private: bool,
        allow_networks: Networks = (),
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.allow_networks = allow_networks
        self.tls = tls or ssl.create_default_context()
        # Addresses the policy let through already: a set lookup instead of the policy's call
        # and its cache key per check. The policy is this client's for good.
        self._allowed: set[str] = set()

    async def request(self, request: Request, deadline: float | None = None) -> Response:
        """The final response (after redirects, if followed); TimeoutError once the loop's
        clock passes `deadline` (None: the caller bounds the time). The client bounds the time
        itself: a shared timer (`_Waits`) costs a fraction of `asyncio.timeout` around it."""
        method, url, body = request.method, request.url, request.body
        headers = request.headers
        first_phases: dict[str, float] | None = None
        for hop in range(request.max_redirects + 1):
            response = await self._one(method, url, headers, body, request, deadline, hop)
            if first_phases is None:
                first_phases = response.phases_ms
            location = (
                response.headers.get("location")
                if request.follow_redirects and response.status in REDIRECTS
                else None
            )
            if not location:
                response.phases_ms = first_phases
                return response
            if hop == request.max_redirects:
                break
            next_url = urljoin(url, location)
            if urlsplit(next_url).scheme not in ("http", "https"):
                raise HttpClientError("redirect", f"redirect to a non-HTTP URL: {next_url[:200]}")
            if urlsplit(next_url).netloc != urlsplit(url).netloc:
                # Credentials are for the origin the user named, not wherever it redirects.
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            if (response.status == 303 and method != "HEAD") or (
                response.status in (301, 302) and method == "POST"
            ):
                method, body = "GET", None
            url = next_url
        raise HttpClientError("redirect", f"more than {request.max_redirects} redirects")

    async def _resolve(self, target: _Target, deadline: float | None) -> list[tuple[int, str]]:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(deadline):
                infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise HttpClientError("dns", f"cannot resolve {target.host}: {exc.strerror}") from None
        return list(dict.fromkeys((int(info[0]), str(info[4][0])) for info in infos))

    async def _one(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        request: Request,
        deadline: float | None,
        hop: int,
    ) -> Response:
        target = _target(url)
        started = time.perf_counter()
        # An address as target needs no resolver (uvloop would still send it to a thread).
        addresses = (
            [target.literal]
            if target.literal is not None
            else await self._resolve(target, deadline)
        )
        allowed = self._allowed
        for _family, address in addresses:
            if address not in allowed:
                # EgressDeniedError propagates: the check reports it as "blocked".
                check_address(
                    address, allow_private=self.allow_private, allow_networks=self.allow_networks
                )
                if len(allowed) >= ADDRESSES_ALLOWED:
                    allowed.clear()
                allowed.add(address)
        resolved = time.perf_counter()
        if hop == 0:  # the request as given: its bytes are the same at every check
            out = request.first_hop
            if out is None:
                out = request.first_hop = self._head(method, target, headers, body) + (body or b"")
        else:
            out = self._head(method, target, headers, body) + (body or b"")
        if target.secure:
            async with asyncio.timeout_at(deadline):
                return await self._one_tls(
                    target, out, method, request, addresses, started, resolved
                )
        loop = asyncio.get_running_loop()
        errors: list[str] = []
        for family, address in addresses:
            sock = bare_nonblocking_stream(family)
            exchange: _PlainExchange | None = None
            try:
                error = sock.connect_ex((address, target.port))
                if error not in _CONNECTING:
                    errors.append(f"{address}: {os.strerror(error)}")
                    continue
                exchange = _PlainExchange(loop, sock, out, request.max_body, method == "HEAD")
                exchange.start(loop, deadline)
                try:
                    await exchange.done
                except _ConnectError as exc:
                    errors.append(f"{address}: {exc.error.strerror or exc.error}")
                    continue
            finally:
                if exchange is not None:
                    exchange.stop()
                    if exchange.connected is not None and not exchange.peer_closed:
                        reset_on_close(sock)  # we close first
                sock.close()
            finished = time.perf_counter()
            assert exchange.connected is not None  # the exchange ended without _ConnectError
            return Response(
                status=exchange.status,
                head=exchange.head_bytes(),
                body=bytes(exchange.body),
                too_large=exchange.too_large,
                cert_expires_at=None,
                phases_ms={
                    "dns": ms(resolved - started),
                    "connect": ms(exchange.connected - resolved),
                    "first_byte": ms((exchange.first_byte or finished) - started),
                },
            )
        raise HttpClientError(
            "connect", f"cannot connect to {target.host}:{target.port}: {'; '.join(errors)}"
        )

    async def _one_tls(
        self,
        target: _Target,
        out: bytes,
        method: str,
        request: Request,
        addresses: list[tuple[int, str]],
        started: float,
        resolved: float,
    ) -> Response:
        """One hop over TLS: connected by the loop, then upgraded with `start_tls`, so the
        handshake is timed apart from the connect."""
        loop = asyncio.get_running_loop()
        host, port = target.host, target.port
        protocol = _ResponseProtocol(loop, request.max_body, method == "HEAD")
        transport: asyncio.Transport | None = None
        errors: list[str] = []
        for _family, address in addresses:
            try:
                await loop.create_connection(lambda: protocol, address, port)
                transport = protocol.transport
                break
            except OSError as exc:
                errors.append(f"{address}: {exc.strerror or exc}")
        if transport is None:
            raise HttpClientError(
                "connect", f"cannot connect to {host}:{port}: {'; '.join(errors)}"
            )
        connected = time.perf_counter()
        plain = transport
        try:
            try:
                upgraded = await loop.start_tls(
                    transport,
                    protocol,
                    self.tls if request.verify_tls else _unverified_context(),
                    server_hostname=host,
                )
            except (ssl.SSLError, ssl.CertificateError) as exc:
                raise HttpClientError("tls", str(exc)) from None
            except ConnectionError as exc:
                raise HttpClientError("tls", f"TLS handshake failed: {exc}") from None
            if upgraded is None:
                raise HttpClientError("tls", "TLS handshake failed")
            transport = protocol.transport = upgraded
            handshaken = time.perf_counter()
            transport.write(out)
            await protocol.done
            finished = time.perf_counter()
            cert_expires_at = _cert_expiry(transport)
        finally:
            if not protocol.peer_closed:
                # We close first: without a reset our side would wait in TIME_WAIT.
                _reset(plain)
            transport.abort()
        return Response(
            status=protocol.status,
            head=protocol.head_bytes(),
            body=bytes(protocol.body),
            too_large=protocol.too_large,
            cert_expires_at=cert_expires_at,
            phases_ms={
                "dns": ms(resolved - started),
                "connect": ms(connected - resolved),
                "tls": ms(handshaken - connected),
                "first_byte": ms((protocol.first_byte or finished) - started),
            },
        )

    @staticmethod
    def _head(method: str, target: _Target, headers: dict[str, str], body: bytes | None) -> bytes:
        head = b"%s %s HTTP/1.1\r\n" % (method.encode("ascii"), target.path)
        given = {name.lower() for name in headers} if headers else _NONE_GIVEN
        if "host" not in given:
            head += target.host_line
        if "user-agent" not in given:
            head += b"User-Agent: " + USER_AGENT + b"\r\n"
        if "accept" not in given:
            head += b"Accept: */*\r\n"
        if "authorization" not in given and target.url_credentials is not None:
            head += target.url_credentials
        head += b"Connection: close\r\n"
        for name, value in headers.items():
            head += _encode_header(name, value)
        if "content-length" not in given and (
            body is not None or method in ("POST", "PUT", "PATCH")
        ):
            head += b"Content-Length: %d\r\n" % len(body or b"")
        return head + b"\r\n"
