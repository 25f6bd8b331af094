"""The one guarded path for requests to user-given addresses (monitor targets, webhooks).

The policy is applied to the addresses a name resolves to, at connect time, so it holds on every
redirect and cannot be dodged by a DNS answer that changes between a check and the connect.
aiohttp has no public hook at that point, so the connector's resolution step is wrapped: this is
the narrowest place where both literal addresses and resolved names pass.

The same policy also answers at save time (`refusal_for_target`), so a refused target is a
validation error naming the field instead of a check that fails forever. Save time is only a
courtesy: DNS may change afterwards, and the connect-time check is what holds.

The policy, in order:
1. unspecified and multicast addresses are refused (they are not one host);
2. link-local addresses (169.254.0.0/16, fe80::/10: where cloud metadata services live) are
   refused always; neither `allow_private` nor the allow-list can open them;
3. with `allow_private`, everything else is allowed;
4. otherwise public addresses are allowed, and loopback, private and reserved addresses only
   when they fall in one of `allow_networks`.
An IPv4 address hidden in an IPv6 one (mapped, NAT64, 6to4) is judged as that IPv4 address.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import ResolveResult

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Networks = tuple[IPNetwork, ...]

WEB_SCHEMES = ("http", "https")


class EgressDeniedError(aiohttp.ClientConnectionError):
    """The destination is not allowed by the egress policy."""


# RFC 6052 well-known NAT64 prefix: on an IPv6-only host with NAT64, 64:ff9b::a9fe:a9fe reaches
# 169.254.169.254.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address that an IPv4-mapped, 6to4 or NAT64 address leads to, if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def _effective(address: IPAddress) -> IPAddress:
    """The address a connection to `address` really reaches, for judging it."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = embedded_ipv4(address)
        if embedded is not None:
            return embedded
    return address


def is_public(address: IPAddress) -> bool:
    reached = _effective(address)
    return reached.is_global and not reached.is_multicast


def is_link_local(address: IPAddress) -> bool:
    """Link-local, where cloud metadata services live (169.254.169.254, fe80::/10)."""
    return _effective(address).is_link_local


def _kind(address: IPAddress) -> str:
    if address.is_loopback:
        return "loopback"
    if address.is_private:
        return "a private address"
    return "not a public address"


def address_refusal(
    address: IPAddress, *, allow_private: bool, allow_networks: Networks = (), subject: str = ""
) -> str | None:
    """Why the policy refuses a connection to `address`, or None (see the module's docstring).
    `subject`: how the user wrote it, when that differs (a name, a legacy IPv4 form)."""
    reached = _effective(address)
    shown = f"{subject} ({address})" if subject and subject != str(address) else str(address)
    if reached.is_unspecified or reached.is_multicast:
        return f"{shown} is not a unicast address; always refused"
    if reached.is_link_local:
        return f"{shown} is link-local/cloud metadata; always refused"
    if allow_private or is_public(reached):
        return None
    if any(reached in network or address in network for network in allow_networks):
        return None
    return (
        f"{shown} is {_kind(reached)}; loopback, private and reserved addresses are refused "
        "here (PINGTOWER_ALLOW_PRIVATE_TARGETS is off and no PINGTOWER_EGRESS_ALLOW_NETWORKS "
        "entry holds it)"
    )


def check_address(address: str, *, allow_private: bool, allow_networks: Networks = ()) -> None:
    """Raise EgressDeniedError unless the policy lets us connect to `address` (an IP address as
    a resolver returns it, optionally with an IPv6 zone)."""
    refusal = _refusal(address, allow_private, allow_networks)
    if refusal is not None:
        raise EgressDeniedError(refusal)


@functools.lru_cache(maxsize=65_536)
def _refusal(address: str, allow_private: bool, allow_networks: Networks) -> str | None:
    """Why the policy refuses `address`, or None. Cached: a probe connects to the same few
    thousand addresses over and over."""
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"not an IP address: {address!r}"
    return address_refusal(parsed, allow_private=allow_private, allow_networks=allow_networks)


# The IPv4 forms inet_aton (and so getaddrinfo) reads as an address: one to four parts, each
# decimal, octal (leading 0) or hex (0x). 2130706433, 0177.0.0.1, 0x7f.1 and 127.1 all reach
# 127.0.0.1; ipaddress accepts none of them.
_LEGACY_IPV4 = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$", re.IGNORECASE)


def literal_address(host: str) -> IPAddress | None:
    """`host` as the IP address a connection to it reaches, if it is one in any form the
    resolver reads as a literal (brackets, an IPv6 zone, the legacy IPv4 forms); None for a
    name. Parsed here, without DNS, exactly as getaddrinfo would."""
    text = host.strip().removeprefix("[").removesuffix("]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if _LEGACY_IPV4.match(text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None  # e.g. a part too large: getaddrinfo would then try DNS, and fail
    return None


async def refusal_for_target(
    host_or_url: str,
    *,
    allow_private: bool,
    allow_networks: Networks = (),
    schemes: Sequence[str] = WEB_SCHEMES,
    resolve_seconds: float = 2.0,
) -> str | None:
    """Why the policy refuses a target a user is saving, or None.

    `host_or_url` is a URL if it holds "://" (its scheme must be one of `schemes`), else a host.
    A literal address in any form is judged without DNS. A name is resolved (within
    `resolve_seconds`) and refused if any of its addresses is; a name that does not resolve is
    not refused: DNS may be down, and the check reports it when it runs.
    """
    host = host_or_url
    if "://" in host_or_url:
        parts = urlsplit(host_or_url)
        if parts.scheme.lower() not in schemes:
            allowed = ", ".join(f"{scheme}:" for scheme in schemes)
            return f"scheme {parts.scheme}: is not allowed (only {allowed})"
        if not parts.hostname:
            return "the URL has no host"
        host = parts.hostname
    literal = literal_address(host)
    addresses = [literal] if literal is not None else await _resolve(host, resolve_seconds)
    for address in addresses:
        refusal = address_refusal(
            address, allow_private=allow_private, allow_networks=allow_networks, subject=host
        )
        if refusal is not None:
            return refusal
    return None


async def _resolve(host: str, seconds: float) -> list[IPAddress]:
    """The addresses `host` resolves to as a check would see them; none if it does not."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(seconds):
            infos = await loop.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError, TimeoutError):
        return []
    addresses = (literal_address(str(info[4][0])) for info in infos)
    return sorted({address for address in addresses if address is not None}, key=str)


class GuardedConnector(aiohttp.TCPConnector):
    def __init__(
        self, *, allow_private: bool, allow_networks: Networks = (), **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.allow_private = allow_private
        self.allow_networks = allow_networks

    async def _resolve_host(
        self, host: str, port: int, traces: Sequence[Any] | None = None
    ) -> list[ResolveResult]:
        results = await super()._resolve_host(host, port, traces)
        for result in results:
            check_address(
                result["host"],
                allow_private=self.allow_private,
                allow_networks=self.allow_networks,
            )
        return results


def guarded_session(
    *,
    allow_private: bool,
    allow_networks: Networks = (),
    limit: int = 0,
    limit_per_host: int = 0,
    timeout: aiohttp.ClientTimeout | None = None,
    **kwargs: Any,
) -> aiohttp.ClientSession:
    connector = GuardedConnector(
        allow_private=allow_private,
        allow_networks=allow_networks,
        limit=limit,
        limit_per_host=limit_per_host,
        force_close=True,
    )
    return aiohttp.ClientSession(
        connector=connector, timeout=timeout or aiohttp.ClientTimeout(total=30), **kwargs
    )
