"""Real local servers the checks are tested against: HTTP (aiohttp) and TCP (asyncio)."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web


def target_app() -> web.Application:
    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="all systems operational")

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="status page")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("seconds", "5")))
        return web.Response(text="finally")

    async def redirect(request: web.Request) -> web.Response:
        hops = int(request.match_info["hops"])
        raise web.HTTPFound("/ok" if hops <= 1 else f"/redirect/{hops - 1}")

    async def big(_request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 200_000)

    async def auth(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer s3cret":
            return web.Response(status=401)
        return web.Response(text="welcome")

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "pass", "checks": [{"name": "db", "ms": 12}]})

    async def basic(request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(b"monitor:pa55").decode()
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401)
        return web.Response(text="welcome")

    async def echo(request: web.Request) -> web.Response:
        body = await request.text()
        return web.Response(text=f"{request.method} {body}")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/slow", slow)
    app.router.add_get("/redirect/{hops}", redirect)
    app.router.add_get("/big", big)
    app.router.add_get("/auth", auth)
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/health", health)
    app.router.add_get("/basic", basic)
    return app


class HttpTarget:
    """A local HTTP server that can be stopped and started again on the same port."""

    def __init__(self) -> None:
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._runner = web.AppRunner(target_app(), shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@asynccontextmanager
async def http_target() -> AsyncIterator[HttpTarget]:
    target = HttpTarget()
    await target.start()
    try:
        yield target
    finally:
        await target.stop()


@asynccontextmanager
async def tcp_server(greeting: bytes | None = None) -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1; it sends `greeting` on connect, then echoes in upper case."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if greeting is not None:
                writer.write(greeting)
                await writer.drain()
            data = await reader.read(1024)
            if data:
                writer.write(data.upper())
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


class _DnsProtocol(asyncio.DatagramProtocol):
    """Answers from a table of (name, type) -> values; NXDOMAIN for unknown names."""

    def __init__(self, records: dict[tuple[str, str], list[str]]) -> None:
        self.records = records
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        import dns.message
        import dns.rcode
        import dns.rdatatype
        import dns.rrset

        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        values = self.records.get((name, rdtype))
        if values is not None:
            response.answer.append(dns.rrset.from_text(question.name, 60, "IN", rdtype, *values))
        elif not any(known == name for known, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


@asynccontextmanager
async def dns_server(records: dict[tuple[str, str], list[str]]) -> AsyncIterator[str]:
    """A DNS server on 127.0.0.1 (UDP); yields "127.0.0.1:port" for a check's resolver."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _DnsProtocol(records), local_addr=("127.0.0.1", 0)
    )
    try:
        yield f"127.0.0.1:{transport.get_extra_info('sockname')[1]}"
    finally:
        transport.close()


@asynccontextmanager
async def silent_udp_port() -> AsyncIterator[str]:
    """A UDP port that receives and never answers."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    try:
        yield f"127.0.0.1:{transport.get_extra_info('sockname')[1]}"
    finally:
        transport.close()


@asynccontextmanager
async def tls_server(server_context: ssl.SSLContext) -> AsyncIterator[int]:
    """A TLS server on 127.0.0.1 that completes the handshake and closes."""

    async def serve(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
