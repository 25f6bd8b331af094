"""The network addresses a monitor reaches, per check type, for the egress policy at save time.

Pure: the fields are parsed as the check modules parse them when they run, so the address judged
here is the one the check will connect to (the connect-time guard judges it again).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pingtower.common.egress import WEB_SCHEMES
from pingtower.pinger.domain.monitor import InvalidSettingError, parse_host_port


@dataclass(frozen=True)
class NetworkTarget:
    field: str  # as the API names it: "target", "settings.resolver"
    host_or_url: str  # a URL when it holds "://", else a host
    schemes: tuple[str, ...] = WEB_SCHEMES


def _tls_host(target: str) -> str:
    # As the TLS check reads its target: "host", "host:port", "[v6]:port" or a bare IPv6 address.
    if ":" not in target.replace("::", "") and not target.startswith("["):
        return target
    return parse_host_port(target)[0]


def _resolver_host(resolver: str) -> str:
    # As the DNS check reads its resolver: "address", "address:port" or "[v6]:port".
    if resolver.count(":") == 1 or resolver.startswith("["):
        return parse_host_port(resolver, "settings.resolver")[0]
    return resolver


def network_targets(type_: str, target: str, settings: dict[str, Any]) -> list[NetworkTarget]:
    """What a validated monitor of this type connects to; nothing for push types (heartbeat)
    and for the name a DNS monitor asks about (it is looked up, not connected to)."""
    try:
        if type_ == "http":
            return [NetworkTarget("target", target)]
        if type_ == "tcp":
            return [NetworkTarget("target", parse_host_port(target)[0])]
        if type_ == "tls":
            return [NetworkTarget("target", _tls_host(target))]
        if type_ == "icmp":
            return [NetworkTarget("target", target)]
        if type_ == "dns" and settings.get("resolver"):
            return [NetworkTarget("settings.resolver", _resolver_host(str(settings["resolver"])))]
    except InvalidSettingError:
        return []  # the check's own validation has refused it already, naming the field
    return []
