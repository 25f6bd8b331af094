"""The one guarded way out: requests to user-given addresses never reach loopback, private,
link-local or reserved addresses unless the installation allows it (embedded mode, tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from pingtower.common.egress import EgressDeniedError, check_address, guarded_session

HOSTILE = [
    "127.0.0.1",  # loopback
    "127.1.2.3",  # the rest of 127/8 is loopback too
    "10.0.0.1",  # RFC 1918
    "172.16.0.1",  # RFC 1918
    "192.168.1.1",  # RFC 1918
    "169.254.169.254",  # link-local: cloud metadata endpoints
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",  # "this host" on Linux
    "::1",  # IPv6 loopback
    "::",  # unspecified
    "fe80::1",  # IPv6 link-local
    "fe80::1%eth0",  # link-local with a zone
    "fc00::1",  # IPv6 unique local
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:10.0.0.1",  # IPv4-mapped private
    "::ffff:169.254.169.254",  # IPv4-mapped metadata endpoint
    "224.0.0.1",  # multicast
    "ff02::1",  # IPv6 multicast
    "255.255.255.255",  # broadcast
    "192.0.2.10",  # documentation range, never a real host
    "198.18.0.1",  # benchmarking range
    "240.0.0.1",  # reserved
]

PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001::1"]


@pytest.mark.parametrize("address", HOSTILE)
def test_a_non_public_address_is_refused(address: str) -> None:
    with pytest.raises(EgressDeniedError):
        check_address(address, allow_private=False)


@pytest.mark.parametrize("address", PUBLIC)
def test_a_public_address_is_allowed(address: str) -> None:
    check_address(address, allow_private=False)


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.1", "::1", "fc00::1", "192.168.1.1"])
def test_allow_private_lets_private_addresses_through(address: str) -> None:
    check_address(address, allow_private=True)


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "224.0.0.1", "ff02::1"])
def test_unspecified_and_multicast_are_refused_even_when_private_is_allowed(address: str) -> None:
    with pytest.raises(EgressDeniedError, match="unicast"):
        check_address(address, allow_private=True)


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",
        "169.254.0.1",
        "fe80::1",
        "fe80::a9fe:a9fe%eth0",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "2002:a9fe:a9fe::1",
    ],
)
def test_link_local_and_cloud_metadata_are_refused_even_when_private_is_allowed(
    address: str,
) -> None:
    with pytest.raises(EgressDeniedError, match="link-local"):
        check_address(address, allow_private=True)


@pytest.mark.parametrize("address", ["localhost", "example.com", "", "127.0.0.1.nip.io"])
def test_a_name_is_never_checked_as_an_address(address: str) -> None:
    with pytest.raises(EgressDeniedError, match="not an IP address"):
        check_address(address, allow_private=True)


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::7f00:1",  # NAT64 (RFC 6052) of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "2002:7f00:1::",  # 6to4 (RFC 3056) of 127.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    ],
)
def test_ipv6_forms_that_embed_a_private_ipv4_address_are_refused(address: str) -> None:
    # On an IPv6-only network with NAT64 (common on cloud hosts) these reach the embedded IPv4
    # address: 64:ff9b::a9fe:a9fe is the metadata endpoint. The policy must judge the embedded
    # address, as it already does for IPv4-mapped (::ffff:a.b.c.d) addresses.
    with pytest.raises(EgressDeniedError):
        check_address(address, allow_private=False)


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "2002:808:808::1"])
def test_ipv6_forms_that_embed_a_public_ipv4_address_are_allowed(address: str) -> None:
    check_address(address, allow_private=False)


@pytest.fixture
async def local_server() -> AsyncIterator[int]:
    """An HTTP server on 127.0.0.1 that answers 200; yields its port."""

    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="hello")

    async def bounce(_request: web.Request) -> web.Response:
        raise web.HTTPFound("/")

    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_get("/bounce", bounce)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port: int = runner.addresses[0][1]
    try:
        yield port
    finally:
        await runner.cleanup()


TIMEOUT = aiohttp.ClientTimeout(total=5)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_request_to_a_local_server_is_refused_by_default(
    local_server: int, host: str
) -> None:
    async with guarded_session(allow_private=False, timeout=TIMEOUT) as session:
        with pytest.raises(EgressDeniedError):
            await session.get(f"http://{host}:{local_server}/")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_allow_private_reaches_the_local_server(local_server: int, host: str) -> None:
    async with (
        guarded_session(allow_private=True, timeout=TIMEOUT) as session,
        session.get(f"http://{host}:{local_server}/") as response,
    ):
        assert response.status == 200
        assert await response.text() == "hello"


async def test_redirects_are_followed_through_the_same_guard(local_server: int) -> None:
    async with (
        guarded_session(allow_private=True, timeout=TIMEOUT) as session,
        session.get(f"http://127.0.0.1:{local_server}/bounce") as response,
    ):
        assert response.status == 200
        assert [r.status for r in response.history] == [302]


async def test_the_denial_is_a_client_connection_error_callers_already_handle(
    local_server: int,
) -> None:
    # Probes classify connection errors; a denied address must land in that branch too.
    async with guarded_session(allow_private=False, timeout=TIMEOUT) as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"http://127.0.0.1:{local_server}/")
