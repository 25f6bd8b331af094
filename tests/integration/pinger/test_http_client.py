"""The HTTP check's lean client against real local servers: HTTPS with a test CA (verification
on and off, certificate expiry, TLS timing), redirects through the egress policy on every hop,
HEAD, chunked and read-until-close bodies, malformed responses, unsafe headers."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import ssl
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import trustme
from aiohttp import web

from pingtower.common.events import CheckJob, Outcome, utcnow
from pingtower.pinger.checks.base import CheckContext, CheckResult, get_check
from pingtower.pinger.checks.http import _prepared, _request
from pingtower.pinger.domain.monitor import InvalidSettingError


def app() -> web.Application:
    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="all systems operational")

    async def head_only(request: web.Request) -> web.Response:
        return web.Response(status=204 if request.method == "HEAD" else 405)

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in range(int(request.query.get("parts", "3"))):
            await response.write(f"part {part};".encode() * 100)
        await response.write_eof()
        return response

    async def to(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["url"])

    async def see_other(_request: web.Request) -> web.Response:
        raise web.HTTPSeeOther("/method")

    async def method(request: web.Request) -> web.Response:
        return web.Response(text=f"{request.method} {await request.text()!r}")

    async def authorization(request: web.Request) -> web.Response:
        return web.Response(text=f"authorization: {request.headers.get('Authorization', 'none')}")

    async def latin1(_request: web.Request) -> web.Response:
        body = "café".encode("latin-1")
        return web.Response(body=body, headers={"Content-Type": "text/plain; charset=latin-1"})

    application = web.Application()
    application.router.add_get("/ok", ok)
    application.router.add_route("HEAD", "/head", head_only)
    application.router.add_get("/chunked", chunked)
    application.router.add_get("/to", to)
    application.router.add_post("/see-other", see_other)
    application.router.add_route("*", "/method", method)
    application.router.add_get("/authorization", authorization)
    application.router.add_get("/latin1", latin1)
    return application


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def servers(ca: trustme.CA) -> AsyncIterator[dict[str, str]]:
    """http and https on 127.0.0.1, and http on ::1 (a second host to redirect to)."""
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(tls)
    runner = web.AppRunner(app(), shutdown_timeout=0.1)
    await runner.setup()
    sites = {
        "http": web.TCPSite(runner, "127.0.0.1", 0),
        "https": web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls),
        "http6": web.TCPSite(runner, "::1", 0),
    }
    for site in sites.values():
        await site.start()
    ports = [address[1] for address in runner.addresses]
    yield {
        "http": f"http://127.0.0.1:{ports[0]}",
        "https": f"https://127.0.0.1:{ports[1]}",
        "https_name": f"https://localhost:{ports[1]}",
        "http6": f"http://[::1]:{ports[2]}",
    }
    await runner.cleanup()


@pytest.fixture
def context(ca: trustme.CA) -> CheckContext:
    tls = ssl.create_default_context()
    ca.configure_trust(tls)
    return CheckContext(allow_private=True, tls=tls)


async def check(context: CheckContext, url: str, **settings: Any) -> CheckResult:
    now = utcnow()
    target, normalised = get_check("http").validate(url, settings)
    job = CheckJob(
        monitor_id=uuid.uuid4(),
        check_type="http",
        target=target,
        settings=normalised,
        timeout_seconds=5,
        scheduled_at=now,
        deadline=now + timedelta(seconds=60),
    )
    return await get_check("http").run(job, context)


async def test_https_with_a_trusted_certificate_records_its_expiry_and_tls_time(
    context: CheckContext, servers: dict[str, str]
) -> None:
    for base in (servers["https"], servers["https_name"]):
        result = await check(context, f"{base}/ok", keyword="operational")
        assert result.outcome == Outcome.UP, result.error_message
        assert result.cert_expires_at is not None
        assert result.cert_expires_at > utcnow() + timedelta(days=300)  # trustme: ~10 years
        assert {"dns", "connect", "tls", "first_byte", "total"} <= set(result.phases_ms)
        assert result.phases_ms["tls"] > 0


async def test_https_with_an_untrusted_certificate_fails_unless_verification_is_off(
    servers: dict[str, str],
) -> None:
    untrusting = CheckContext(allow_private=True, tls=ssl.create_default_context())
    refused = await check(untrusting, f"{servers['https']}/ok")
    unverified = await check(untrusting, f"{servers['https']}/ok", verify_tls=False)
    assert refused.outcome == Outcome.DOWN
    assert refused.error_kind == "tls"
    assert "certificate" in (refused.error_message or "").lower()
    assert unverified.outcome == Outcome.UP, unverified.error_message


async def test_plain_http_over_ipv6_has_no_tls_phase(
    context: CheckContext, servers: dict[str, str]
) -> None:
    result = await check(context, f"{servers['http6']}/ok")
    assert result.outcome == Outcome.UP, result.error_message
    assert "tls" not in result.phases_ms
    assert result.cert_expires_at is None


async def test_every_redirect_hop_passes_the_egress_policy(servers: dict[str, str]) -> None:
    # 127.0.0.1 is allowed (an allow-listed network), ::1 is not: the redirect there is refused.
    allowed = (ipaddress.ip_network("127.0.0.0/8"),)
    limited = CheckContext(allow_private=False, allow_networks=allowed)
    direct = await check(limited, f"{servers['http']}/ok")
    redirected = await check(limited, f"{servers['http']}/to?url={servers['http6']}/ok")
    assert direct.outcome == Outcome.UP, direct.error_message
    assert redirected.outcome == Outcome.DOWN
    assert redirected.error_kind == "blocked"


async def test_credentials_do_not_follow_a_redirect_to_another_host(
    context: CheckContext, servers: dict[str, str]
) -> None:
    same = await check(
        context,
        f"{servers['http']}/to?url=/authorization",
        bearer_token="s3cret",
        keyword="authorization: Bearer s3cret",
    )
    other = await check(
        context,
        f"{servers['http']}/to?url={servers['http6']}/authorization",
        bearer_token="s3cret",
        keyword="authorization: none",
    )
    assert same.outcome == Outcome.UP, same.error_message
    assert other.outcome == Outcome.UP, other.error_message


async def test_credentials_in_the_url_and_unusual_characters_in_its_path(
    context: CheckContext, servers: dict[str, str]
) -> None:
    base = servers["http"].replace("http://", "http://monitor:pa%3A55@")
    expected = "Basic " + base64.b64encode(b"monitor:pa:55").decode()
    authed = await check(context, f"{base}/authorization", keyword=expected)
    assert authed.outcome == Outcome.UP, authed.error_message
    odd = await check(context, f"{servers['http']}/method?q=a b&é=1", keyword="GET")
    assert odd.outcome == Outcome.UP, odd.error_message


async def test_see_other_turns_a_post_into_a_get_without_body(
    context: CheckContext, servers: dict[str, str]
) -> None:
    result = await check(
        context, f"{servers['http']}/see-other", method="POST", body="x", keyword="GET ''"
    )
    assert result.outcome == Outcome.UP, result.error_message


async def test_a_monitors_checks_share_one_request_and_a_redirect_hop_is_its_own(
    context: CheckContext, servers: dict[str, str]
) -> None:
    settings: dict[str, Any] = {"method": "POST", "body": "x", "keyword": "GET ''"}
    for _ in range(2):  # the second check sends the first hop's bytes the first one kept
        result = await check(context, f"{servers['http']}/see-other", **settings)
        assert result.outcome == Outcome.UP, result.error_message
    target, normalised = get_check("http").validate(f"{servers['http']}/see-other", settings)
    first_hop = _request(target, _prepared(normalised)).first_hop
    assert first_hop is not None
    assert first_hop.startswith(b"POST /see-other HTTP/1.1\r\n")
    assert first_hop.endswith(b"Content-Length: 1\r\n\r\nx")


async def test_a_redirect_to_another_scheme_is_refused(
    context: CheckContext, servers: dict[str, str]
) -> None:
    result = await check(context, f"{servers['http']}/to?url=ftp://127.0.0.1/")
    assert result.error_kind == "redirect"


async def test_head_chunked_and_charset_bodies(
    context: CheckContext, servers: dict[str, str]
) -> None:
    head = await check(context, f"{servers['http']}/head", method="HEAD", expected_status=["204"])
    assert head.outcome == Outcome.UP, head.error_message
    chunked = await check(context, f"{servers['http']}/chunked", keyword="part 2;")
    assert chunked.outcome == Outcome.UP, chunked.error_message
    assert chunked.size_bytes == 3 * 700
    capped = await check(context, f"{servers['http']}/chunked?parts=50", max_size_bytes=1000)
    assert capped.error_kind == "size"
    latin1 = await check(context, f"{servers['http']}/latin1", keyword="café")
    assert latin1.outcome == Outcome.UP, latin1.error_message


async def raw_server(reply: bytes) -> tuple[asyncio.Server, str]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"


async def test_a_body_that_ends_when_the_connection_closes(context: CheckContext) -> None:
    server, url = await raw_server(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
    try:
        result = await check(context, url, keyword="until the end")
    finally:
        server.close()
    assert result.outcome == Outcome.UP, result.error_message
    assert result.size_bytes == len("until the end")


async def test_malformed_and_truncated_responses_are_protocol_errors(
    context: CheckContext,
) -> None:
    for reply in (b"SMTP ready\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort"):
        server, url = await raw_server(reply)
        try:
            result = await check(context, url)
        finally:
            server.close()
        assert result.outcome == Outcome.DOWN
        assert result.error_kind == "protocol", result.error_message


def test_headers_that_could_smuggle_a_request_are_refused_naming_the_field() -> None:
    for headers in ({"X-A": "1\r\nX-B: 2"}, {"X-A\r\nX-B": "2"}, {"": "x"}, {"X A": "1"}):
        with pytest.raises(InvalidSettingError) as error:
            get_check("http").validate("https://example.com/", {"headers": headers})
        assert error.value.field == "settings.headers"
