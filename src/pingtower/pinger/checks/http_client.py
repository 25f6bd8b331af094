"""A lean HTTP/1.1 client for checks: one request per fresh connection, on an asyncio protocol
with httptools' parser (llhttp).

Why not aiohttp: a check needs none of its pooling, cookies, streaming or decompression, and
those cost about 0.25 ms of CPU per request on loopback, more than the rest of the check. This
client does exactly what a check needs, and times each phase itself: DNS (the system resolver,
every address judged by the egress policy before any connect), TCP connect, TLS handshake
(loop.start_tls on the connected socket, so it is timed apart), first byte, total. Redirects are
followed here, hop by hop, through the same guarded resolution.

What repeats from check to check is done once: a URL is parsed into its request line, Host
header and address (if it is one) once per URL (`_target`, bounded). A connection the server
has not closed by the time the response is in is closed with a reset (SO_LINGER 0), so the
prober never holds sockets in TIME_WAIT, however many checks it runs; one whose close has
already been read is closed normally (nothing is left waiting on our side, and setting the
option costs about 5 µs).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import ipaddress
import re
import socket
import ssl
import struct
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, unquote, urljoin, urlsplit

import httptools

from pingtower.common.egress import Networks, check_address

USER_AGENT = b"PingTower-Check/1"
REDIRECTS = frozenset({301, 302, 303, 307, 308})
_URL_SAFE = "/%?=&;:@!$'()*+,~-._[]"
_LINGER_RESET = struct.pack("ii", 1, 0)
_NONE_GIVEN: frozenset[str] = frozenset()  # the header names of a request without headers
# URLs whose parsed form is kept: a probe checks the same URLs over and over. A fleet with more
# distinct URLs than this parses the others on each check, as every check did before.
TARGETS_CACHED = 16_384


class HttpClientError(Exception):
    """A failure with the check's error kind: dns, connect, tls, protocol or redirect."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class Response:
    status: int
    raw_headers: list[tuple[bytes, bytes]]  # as received
    body: bytes
    too_large: bool  # the body went past the cap; `body` holds the first cap + 1 bytes
    cert_expires_at: datetime | None
    phases_ms: dict[str, float] = field(default_factory=dict)  # of the first hop

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
    method: str
    url: str
    headers: dict[str, str]  # may be shared between checks: never changed here
    body: bytes | None
    max_body: int
    verify_tls: bool
    follow_redirects: bool
    max_redirects: int


class _ResponseProtocol(asyncio.Protocol):
    """Reads one response. It lets go of its parser once the response is complete and of its
    transport once the connection is lost: both refer back to it, and such cycles are freed only
    by the garbage collector, whose collections they made several times more frequent."""

    __slots__ = (
        "body",
        "done",
        "first_byte",
        "head",
        "header_list",
        "headers_complete",
        "max_body",
        "parser",
        "peer_closed",
        "status",
        "too_large",
        "transport",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, max_body: int, head: bool) -> None:
        self.parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self.done: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.header_list: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.max_body = max_body
        self.head = head
        self.headers_complete = False
        self.too_large = False
        self.first_byte: float | None = None
        self.peer_closed = False  # the server's FIN (or reset) is in
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.first_byte is None:
            self.first_byte = time.perf_counter()
        parser = self.parser
        if parser is None:  # the response is complete: the rest is not read
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(HttpClientError("protocol", f"malformed response: {exc}"))

    def eof_received(self) -> None:
        self.peer_closed = True  # returning None lets the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.peer_closed = True
        self.transport = None
        if self.done.done():
            return
        if self.headers_complete and self._ends_at_close():
            self._finish(None)
        elif isinstance(exc, ssl.SSLError):
            self._finish(HttpClientError("tls", str(exc)))
        else:
            self._finish(HttpClientError("protocol", "connection closed before the response"))

    def _ends_at_close(self) -> bool:
        names = {name.lower() for name, _ in self.header_list}
        return b"content-length" not in names and b"transfer-encoding" not in names

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_list.append((name, value))

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
    """Makes the transport's close a reset (SO_LINGER 0): the check is over, and a normal close
    would leave the socket in TIME_WAIT for a minute on our side whenever we close first."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # OSError: the peer's reset came first; nothing is left to linger.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)


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

    async def request(self, request: Request) -> Response:
        """The final response (after redirects, if followed). The caller bounds the time."""
        method, url, body = request.method, request.url, request.body
        headers = request.headers
        first_phases: dict[str, float] | None = None
        for hop in range(request.max_redirects + 1):
            response = await self._one(method, url, headers, body, request)
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

    async def _resolve(self, host: str, port: int) -> list[tuple[int, str]]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise HttpClientError("dns", f"cannot resolve {host}: {exc.strerror}") from None
        addresses: list[tuple[int, str]] = list(
            dict.fromkeys((int(info[0]), str(info[4][0])) for info in infos)
        )
        for _family, address in addresses:
            # EgressDeniedError propagates: the check reports it as "blocked".
            check_address(
                address, allow_private=self.allow_private, allow_networks=self.allow_networks
            )
        return addresses

    async def _one(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        request: Request,
    ) -> Response:
        loop = asyncio.get_running_loop()
        target = _target(url)
        host, port = target.host, target.port
        started = time.perf_counter()
        addresses: list[tuple[int, str]]
        if target.literal is not None:
            check_address(
                target.literal[1],
                allow_private=self.allow_private,
                allow_networks=self.allow_networks,
            )
            addresses = [target.literal]
        else:
            addresses = await self._resolve(host, port)
        resolved = time.perf_counter()

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
            if target.secure:
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
            transport.write(self._head(method, target, headers, body) + (body or b""))
            await protocol.done
            finished = time.perf_counter()
            cert_expires_at = _cert_expiry(transport) if target.secure else None
        finally:
            if not protocol.peer_closed:
                # We close first: without a reset our side would wait in TIME_WAIT.
                _reset(plain)
            transport.abort()
        phases = {
            "dns": round((resolved - started) * 1000, 3),
            "connect": round((connected - resolved) * 1000, 3),
        }
        if target.secure:
            phases["tls"] = round((handshaken - connected) * 1000, 3)
        phases["first_byte"] = round(((protocol.first_byte or finished) - started) * 1000, 3)
        return Response(
            status=protocol.status,
            raw_headers=protocol.header_list,
            body=bytes(protocol.body),
            too_large=protocol.too_large,
            cert_expires_at=cert_expires_at,
            phases_ms=phases,
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
