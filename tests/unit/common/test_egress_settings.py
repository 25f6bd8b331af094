"""The egress settings and the addresses a monitor reaches: read and checked before any
request is made."""

from __future__ import annotations

import ipaddress

import pytest

from pingtower.common.settings import SettingsError, load_settings
from pingtower.pinger.api.targets import NetworkTarget, network_targets


def test_the_allow_list_is_read_from_a_comma_separated_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PINGTOWER_EGRESS_ALLOW_NETWORKS", "10.20.0.0/16, fd00:1::/64")
    assert load_settings().egress_allow_networks == (
        ipaddress.ip_network("10.20.0.0/16"),
        ipaddress.ip_network("fd00:1::/64"),
    )


def test_the_allow_list_is_empty_by_default() -> None:
    assert load_settings().egress_allow_networks == ()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("10.0.0.1/8", "has host bits set"),
        ("intranet", "does not appear to be an IPv4 or IPv6 network"),
        ("10.0.0.0/33", "does not appear to be an IPv4 or IPv6 network"),
    ],
)
def test_a_bad_network_stops_the_start_with_the_variable_and_the_value(
    monkeypatch: pytest.MonkeyPatch, value: str, reason: str
) -> None:
    monkeypatch.setenv("PINGTOWER_EGRESS_ALLOW_NETWORKS", f"192.168.0.0/24,{value}")
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert "PINGTOWER_EGRESS_ALLOW_NETWORKS" in str(error.value)
    assert repr(value) in str(error.value)
    assert reason in str(error.value)


def test_the_monitor_quota_defaults_to_ten_thousand_and_zero_turns_it_off() -> None:
    assert load_settings().max_monitors_per_workspace == 10_000
    assert load_settings(max_monitors_per_workspace=0).max_monitors_per_workspace == 0
    with pytest.raises(SettingsError, match="PINGTOWER_MAX_MONITORS_PER_WORKSPACE"):
        load_settings(max_monitors_per_workspace=-1)


@pytest.mark.parametrize(
    ("type_", "target", "settings", "expected"),
    [
        ("http", "http://10.0.0.1/x", {}, [NetworkTarget("target", "http://10.0.0.1/x")]),
        ("tcp", "db.internal:5432", {}, [NetworkTarget("target", "db.internal")]),
        ("tcp", "[fe80::1]:22", {}, [NetworkTarget("target", "fe80::1")]),
        ("tls", "example.com", {}, [NetworkTarget("target", "example.com")]),
        ("tls", "example.com:8443", {}, [NetworkTarget("target", "example.com")]),
        ("tls", "fe80::1", {}, [NetworkTarget("target", "fe80::1")]),
        ("icmp", "10.0.0.1", {}, [NetworkTarget("target", "10.0.0.1")]),
        ("dns", "example.com", {}, []),
        (
            "dns",
            "example.com",
            {"resolver": "169.254.169.254"},
            [NetworkTarget("settings.resolver", "169.254.169.254")],
        ),
        (
            "dns",
            "example.com",
            {"resolver": "[fe80::1]:53"},
            [NetworkTarget("settings.resolver", "fe80::1")],
        ),
        (
            "dns",
            "example.com",
            {"resolver": "10.0.0.2:5353"},
            [NetworkTarget("settings.resolver", "10.0.0.2")],
        ),
        ("heartbeat", "", {}, []),
    ],
)
def test_a_monitor_reaches_the_addresses_its_check_connects_to(
    type_: str, target: str, settings: dict[str, str], expected: list[NetworkTarget]
) -> None:
    assert network_targets(type_, target, settings) == expected
