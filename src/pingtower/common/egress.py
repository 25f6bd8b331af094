"""The one guarded path for requests to user-given addresses (monitor targets, webhooks).

The policy is applied to the addresses a name resolves to, at connect time, so it holds on every
redirect and cannot be dodged by a DNS answer that changes between a check and the connect.
aiohttp has no public hook at that point, so the connector's resolution step is wrapped: this is
the narrowest place where both literal addresses and resolved names pass.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from typing import Any

import aiohttp
from aiohttp.abc import ResolveResult

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = embedded_ipv4(address)
        if embedded is not None:
            return is_public(embedded)
    return address.is_global and not address.is_multicast


def is_link_local(address: IPAddress) -> bool:
    """Link-local, where cloud metadata services live (169.254.169.254, fe80::/10)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = embedded_ipv4(address)
        if embedded is not None:
            return embedded.is_link_local
    return address.is_link_local


def check_address(address: str, *, allow_private: bool) -> None:
    """Raise EgressDeniedError unless the policy lets us connect to `address`.

    Link-local addresses are refused even when private ranges are allowed: they reach the cloud
    metadata service, which is never a monitoring target.
    """
    refusal = _refusal(address, allow_private)
    if refusal is not None:
        raise EgressDeniedError(refusal)


@functools.lru_cache(maxsize=65_536)
def _refusal(address: str, allow_private: bool) -> str | None:
    """Why the policy refuses `address`, or None. Cached: a probe connects to the same few
    thousand addresses over and over."""
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"not an IP address: {address!r}"
    if parsed.is_unspecified or parsed.is_multicast:
        return f"{address} is not a unicast address"
    if is_link_local(parsed):
        return f"{address} is link-local (cloud metadata); always refused"
    if not allow_private and not is_public(parsed):
        return f"{address} is a private, loopback or reserved address"
    return None


class GuardedConnector(aiohttp.TCPConnector):
    def __init__(self, *, allow_private: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.allow_private = allow_private

    async def _resolve_host(
        self, host: str, port: int, traces: Sequence[Any] | None = None
    ) -> list[ResolveResult]:
        results = await super()._resolve_host(host, port, traces)
        for result in results:
            check_address(result["host"], allow_private=self.allow_private)
        return results


def guarded_session(
    *,
    allow_private: bool,
    limit: int = 0,
    limit_per_host: int = 0,
    timeout: aiohttp.ClientTimeout | None = None,
    **kwargs: Any,
) -> aiohttp.ClientSession:
    connector = GuardedConnector(
        allow_private=allow_private,
        limit=limit,
        limit_per_host=limit_per_host,
        force_close=True,
    )
    return aiohttp.ClientSession(
        connector=connector, timeout=timeout or aiohttp.ClientTimeout(total=30), **kwargs
    )
