"""Monitor validation that does not depend on a check type, and the checks' own settings."""

from __future__ import annotations

import pytest

from pingtower.pinger.checks.base import get_check
from pingtower.pinger.domain.monitor import (
    InvalidSettingError,
    StatusCodes,
    parse_host_port,
    validate_http_url,
    validate_timing,
)


def test_status_codes_accept_codes_and_ranges() -> None:
    codes = StatusCodes.parse(["200-299", "301"])
    assert 200 in codes
    assert 299 in codes
    assert 301 in codes
    assert 302 not in codes
    assert 500 not in codes


@pytest.mark.parametrize("spec", ["2xx", "299-200", "99", "600", "200-", ""])
def test_bad_status_codes_name_the_field(spec: str) -> None:
    with pytest.raises(InvalidSettingError) as error:
        StatusCodes.parse([spec], "settings.expected_status")
    assert error.value.field == "settings.expected_status"


def test_http_target_must_be_an_http_url() -> None:
    assert validate_http_url("https://example.com/x") == "https://example.com/x"
    with pytest.raises(InvalidSettingError, match="http"):
        validate_http_url("ftp://example.com")
    with pytest.raises(InvalidSettingError, match="host"):
        validate_http_url("http:///path")


def test_host_port_parsing() -> None:
    assert parse_host_port("example.com:443") == ("example.com", 443)
    assert parse_host_port("[::1]:22") == ("::1", 22)
    for bad in ("example.com", "example.com:0", "example.com:http", ":80"):
        with pytest.raises(InvalidSettingError):
            parse_host_port(bad)


def test_interval_below_the_minimum_is_refused() -> None:
    with pytest.raises(InvalidSettingError) as error:
        validate_timing(interval=5, timeout=1, retry_interval=5, min_interval=10)
    assert error.value.field == "interval_seconds"


def test_timeout_longer_than_the_interval_is_refused() -> None:
    with pytest.raises(InvalidSettingError) as error:
        validate_timing(interval=10, timeout=11, retry_interval=10, min_interval=10)
    assert error.value.field == "timeout_seconds"


def test_retry_interval_longer_than_the_interval_is_refused() -> None:
    with pytest.raises(InvalidSettingError) as error:
        validate_timing(interval=60, timeout=10, retry_interval=61, min_interval=10)
    assert error.value.field == "retry_interval_seconds"


def test_http_settings_are_normalised_with_defaults() -> None:
    target, settings = get_check("http").validate("http://example.com", {"method": "HEAD"})
    assert target == "http://example.com"
    assert settings["method"] == "HEAD"
    assert settings["expected_status"] == ["200-299"]


def test_http_settings_errors_name_the_nested_field() -> None:
    with pytest.raises(InvalidSettingError) as error:
        get_check("http").validate("http://example.com", {"expected_status": ["abc"]})
    assert error.value.field == "settings.expected_status"
    with pytest.raises(InvalidSettingError) as error:
        get_check("http").validate("http://example.com", {"max_redirects": -1})
    assert error.value.field == "settings.max_redirects"
    with pytest.raises(InvalidSettingError) as error:
        get_check("http").validate("http://example.com", {"colour": "red"})
    assert error.value.field == "settings.colour"


def test_unknown_check_type_is_refused() -> None:
    with pytest.raises(InvalidSettingError) as error:
        get_check("carrier-pigeon")
    assert error.value.field == "type"


def test_tcp_expect_must_be_a_valid_regex() -> None:
    with pytest.raises(InvalidSettingError) as error:
        get_check("tcp").validate("db.example.com:5432", {"expect": "("})
    assert error.value.field == "settings.expect"
