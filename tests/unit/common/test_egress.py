"""The one guarded way out: requests to user-given addresses never reach loopback, private,
link-local or reserved addresses unless the installation allows it (embedded mode, tests)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from pingtower.common.egress import (
    EgressDeniedError,
    check_address,
    guarded_session,
    literal_address,
    refusal_for_target,
)

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


# --- The allow-list of networks --------------------------------------------------------------

LAN = (ipaddress.ip_network("10.20.0.0/16"), ipaddress.ip_network("fd00:1::/64"))


@pytest.mark.parametrize("address", ["10.20.3.4", "fd00:1::5", "::ffff:10.20.3.4"])
def test_an_allow_listed_network_is_reachable_when_private_addresses_are_not(address: str) -> None:
    check_address(address, allow_private=False, allow_networks=LAN)


@pytest.mark.parametrize("address", ["10.21.0.1", "192.168.1.1", "127.0.0.1", "fd00:2::1"])
def test_private_addresses_outside_the_allow_list_stay_refused(address: str) -> None:
    with pytest.raises(EgressDeniedError, match="PINGTOWER_EGRESS_ALLOW_NETWORKS"):
        check_address(address, allow_private=False, allow_networks=LAN)


@pytest.mark.parametrize(
    ("address", "networks"),
    [
        ("169.254.169.254", ("169.254.0.0/16",)),
        ("169.254.169.254", ("0.0.0.0/0",)),
        ("fe80::1", ("fe80::/10",)),
        ("::ffff:169.254.169.254", ("::/0",)),
        ("0.0.0.0", ("0.0.0.0/8",)),
        ("224.0.0.1", ("224.0.0.0/4",)),
    ],
)
def test_the_allow_list_never_opens_link_local_unspecified_or_multicast(
    address: str, networks: tuple[str, ...]
) -> None:
    allowed = tuple(ipaddress.ip_network(network) for network in networks)
    with pytest.raises(EgressDeniedError, match="always refused"):
        check_address(address, allow_private=False, allow_networks=allowed)


def test_ipv4_mapped_unspecified_is_refused_like_unspecified() -> None:
    with pytest.raises(EgressDeniedError, match="unicast"):
        check_address("::ffff:0.0.0.0", allow_private=True)


async def test_the_guarded_session_reaches_an_allow_listed_server(local_server: int) -> None:
    loopback = (ipaddress.ip_network("127.0.0.1/32"),)
    async with (
        guarded_session(allow_private=False, allow_networks=loopback, timeout=TIMEOUT) as session,
        session.get(f"http://127.0.0.1:{local_server}/") as response,
    ):
        assert response.status == 200


# --- Literal addresses in every form the resolver reads ---------------------------------------


LEGACY_IPV4 = [
    ("127.0.0.1", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),  # one decimal number
    ("2852039166", "169.254.169.254"),
    ("0177.0.0.1", "127.0.0.1"),  # octal parts
    ("0251.0376.0251.0376", "169.254.169.254"),
    ("0x7f000001", "127.0.0.1"),  # hex
    ("0xA9.0xFE.0xA9.0xFE", "169.254.169.254"),
    ("127.1", "127.0.0.1"),  # short form
]


@pytest.mark.parametrize(("host", "address"), LEGACY_IPV4)
def test_an_ipv4_literal_is_read_as_getaddrinfo_reads_it(host: str, address: str) -> None:
    # The save-time check must judge the address the connection would reach; getaddrinfo (what
    # aiohttp's resolver and the TCP/TLS/ICMP checks call) is the reference.
    assert str(literal_address(host)) == address
    assert {info[4][0] for info in socket.getaddrinfo(host, None)} == {address}


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("::ffff:169.254.169.254", "::ffff:a9fe:a9fe"),
        ("fe80::1%eth0", "fe80::1"),
        ("[fe80::1]", "fe80::1"),
    ],
)
def test_an_ipv6_literal_loses_its_brackets_and_zone(host: str, address: str) -> None:
    assert str(literal_address(host)) == address


@pytest.mark.parametrize(
    "host", ["example.com", "localhost", "1.2.3.4 abc", "999.1.1.1", "1.2.3.4.5"]
)
def test_a_name_or_a_malformed_address_is_not_a_literal(host: str) -> None:
    assert literal_address(host) is None


# --- The save-time decision -------------------------------------------------------------------

ALWAYS_REFUSED = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://2852039166/",
    "http://0251.0376.0251.0376/",
    "http://0xa9fea9fe/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "169.254.169.254",
    "fe80::1",
]
PRIVATE = [
    "http://127.0.0.1:8080/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::1]/",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://0x7f.0.0.1/",
    "http://10.0.0.1/",
    "http://localhost/",
    "localhost",
    "192.168.1.1",
]


@pytest.mark.parametrize("target", ALWAYS_REFUSED)
@pytest.mark.parametrize("allow_private", [False, True])
async def test_link_local_targets_are_refused_at_save_time_whatever_the_setting(
    target: str, allow_private: bool
) -> None:
    refusal = await refusal_for_target(target, allow_private=allow_private)
    assert refusal is not None
    assert "link-local/cloud metadata; always refused" in refusal


@pytest.mark.parametrize("target", PRIVATE)
async def test_private_targets_follow_the_setting_at_save_time(target: str) -> None:
    refusal = await refusal_for_target(target, allow_private=False)
    assert refusal is not None
    assert "loopback" in refusal or "private" in refusal
    assert await refusal_for_target(target, allow_private=True) is None


async def test_the_refusal_names_what_the_user_wrote_and_what_it_reaches() -> None:
    refusal = await refusal_for_target("http://0177.0.0.1/", allow_private=False)
    assert refusal is not None
    assert refusal.startswith("0177.0.0.1 (127.0.0.1) is loopback")
    refusal = await refusal_for_target("localhost", allow_private=False)
    assert refusal is not None
    assert refusal.startswith("localhost (127.0.0.1) is loopback")


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "gopher://127.0.0.1:70/", "ftp://8.8.8.8/", "dict://8.8.8.8/"]
)
async def test_an_unexpected_scheme_is_refused(url: str) -> None:
    refusal = await refusal_for_target(url, allow_private=True)
    assert refusal is not None
    assert "is not allowed (only http:, https:)" in refusal


async def test_a_public_address_is_allowed_at_save_time() -> None:
    assert await refusal_for_target("https://8.8.8.8/", allow_private=False) is None
    assert await refusal_for_target("2606:4700:4700::1111", allow_private=False) is None


async def test_a_name_that_does_not_resolve_is_not_refused_at_save_time() -> None:
    # DNS may be down when the monitor is saved; the check reports the name when it runs.
    assert await refusal_for_target("http://no-such-host.invalid/", allow_private=False) is None


async def test_the_allow_list_applies_at_save_time_too() -> None:
    loopback = (ipaddress.ip_network("127.0.0.0/8"),)
    assert (
        await refusal_for_target(
            "http://localhost:8080/", allow_private=False, allow_networks=loopback
        )
        is None
    )
    refusal = await refusal_for_target(
        "http://2852039166/", allow_private=False, allow_networks=(ipaddress.ip_network("::/0"),)
    )
    assert refusal is not None
