"""A lean HTTP/1.1 client for checks: one request per fresh connection, on an asyncio protocol
with httptools' parser (llhttp).

Why not aiohttp: a check needs none of its pooling, cookies, streaming or decompression, and
those cost about 0.25 ms of CPU per request on loopback, more than the rest of the check. This
client does exactly what a check needs, and times each phase itself: DNS (the system resolver,
every address judged by the egress policy before any connect), TCP connect, TLS handshake
(loop.start_tls on the connected socket, so it is timed apart), first byte, total. Redirects are
followed here, hop by hop, through the same guarded resolution.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import ipaddress
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import SplitResult, quote, unquote, urljoin, urlsplit

import httptools

from pingtower.common.egress import Networks, check_address

USER_AGENT = b"PingTower-Check/1"
REDIRECTS = frozenset({301, 302, 303, 307, 308})
_URL_SAFE = "/%?=&;:@!$'()*+,~-._[]"


class HttpClientError(Exception):
    """A failure with the check's error kind: dns, connect, tls, protocol or redirect."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    too_large: bool  # the body went past the cap; `body` holds the first cap + 1 bytes
    cert_expires_at: datetime | None
    phases_ms: dict[str, float] = field(default_factory=dict)  # of the first hop

    @property
    def charset(self) -> str | None:
        for part in self.headers.get("content-type", "").split(";")[1:]:
            name, _, value = part.strip().partition("=")
            if name.lower() == "charset" and value:
                return value.strip('"')
        return None


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    max_body: int
    verify_tls: bool
    follow_redirects: bool
    max_redirects: int


class _ResponseProtocol(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, max_body: int, head: bool) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.done: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.header_list: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.max_body = max_body
        self.head = head
        self.headers_complete = False
        self.too_large = False
        self.first_byte: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.first_byte is None:
            self.first_byte = time.perf_counter()
        if self.done.done():
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(HttpClientError("protocol", f"malformed response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
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
        headers = dict(request.headers)
        first_phases: dict[str, float] | None = None
        for hop in range(request.max_redirects + 1):
            response = await self._one(method, url, headers, body, request)
            if first_phases is None:
                first_phases = response.phases_ms
            location = response.headers.get("location")
            if not (request.follow_redirects and response.status in REDIRECTS and location):
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
        try:
            # An address needs no resolver (uvloop would still send it to a thread).
            literal = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
            check_address(
                str(literal), allow_private=self.allow_private, allow_networks=self.allow_networks
            )
            return [(family, str(literal))]
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
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        host = parts.hostname
        if not host or parts.scheme not in ("http", "https"):
            raise HttpClientError("protocol", f"not an HTTP URL: {url[:200]}")
        try:
            port = parts.port or (443 if secure else 80)
        except ValueError:
            raise HttpClientError("protocol", "the URL has a bad port") from None
        started = time.perf_counter()
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
        try:
            if secure:
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
            transport.write(self._head(method, parts, headers, body) + (body or b""))
            await protocol.done
            finished = time.perf_counter()
            cert_expires_at = _cert_expiry(transport) if secure else None
        finally:
            transport.close()
        phases = {
            "dns": round((resolved - started) * 1000, 3),
            "connect": round((connected - resolved) * 1000, 3),
        }
        if secure:
            phases["tls"] = round((handshaken - connected) * 1000, 3)
        first_byte = protocol.first_byte or finished
        phases["first_byte"] = round((first_byte - started) * 1000, 3)
        response_headers: dict[str, str] = {}
        for name, value in protocol.header_list:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            response_headers[key] = (
                f"{response_headers[key]}, {text}" if key in response_headers else text
            )
        return Response(
            status=protocol.parser.get_status_code(),
            headers=response_headers,
            body=bytes(protocol.body),
            too_large=protocol.too_large,
            cert_expires_at=cert_expires_at,
            phases_ms=phases,
        )

    @staticmethod
    def _head(
        method: str, parts: SplitResult, headers: dict[str, str], body: bytes | None
    ) -> bytes:
        # Like a browser: characters a request line may not hold are percent-encoded, escapes
        # the user wrote are kept.
        target = quote(
            (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), safe=_URL_SAFE
        )
        default_port = 443 if parts.scheme == "https" else 80
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.port and parts.port != default_port:
            host = f"{host}:{parts.port}"
        lines = [f"{method} {target} HTTP/1.1\r\n".encode("ascii", errors="strict")]
        given = {name.lower() for name in headers}
        if "host" not in given:
            lines.append(
                b"Host: "
                + (host if host.isascii() else host.encode("idna").decode()).encode()
                + b"\r\n"
            )
        if "user-agent" not in given:
            lines.append(b"User-Agent: " + USER_AGENT + b"\r\n")
        if "accept" not in given:
            lines.append(b"Accept: */*\r\n")
        if "authorization" not in given and parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            token = base64.b64encode(credentials.encode()).decode()
            lines.append(f"Authorization: Basic {token}\r\n".encode())
        lines.append(b"Connection: close\r\n")
        lines.extend(_encode_header(name, value) for name, value in headers.items())
        if "content-length" not in given and (
            body is not None or method in ("POST", "PUT", "PATCH")
        ):
            lines.append(b"Content-Length: %d\r\n" % len(body or b""))
        lines.append(b"\r\n")
        return b"".join(lines)
