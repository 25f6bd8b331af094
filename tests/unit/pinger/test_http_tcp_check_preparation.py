"""What the HTTP and TCP checks work out once per monitor rather than per check: settings,
parsed URLs and targets. Without a network."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from pingtower.pinger.checks.http import HttpCheck, _accepts, _prepared
from pingtower.pinger.checks.http_client import HttpClientError, _target
from pingtower.pinger.checks.tcp import _endpoint
from pingtower.pinger.domain.monitor import InvalidSettingError


def settings(**given: Any) -> dict[str, Any]:
    """Settings as a job carries them: validated and dumped as the API stores them."""
    return HttpCheck().validate("http://example.com/", given)[1]


def test_equal_settings_share_one_prepared_entry_and_different_ones_do_not() -> None:
    first = _prepared(settings(keyword="up"))
    assert _prepared(settings(keyword="up")) is first
    assert _prepared(settings(keyword="down")) is not first
    assert _prepared(settings(keyword="up", degraded_above_ms=100)) is not first


def test_prepared_settings_carry_the_request_and_the_assertions() -> None:
    prepared = _prepared(
        settings(
            method="POST",
            body="ping",
            headers={"X-A": "1"},
            bearer_token="t0ken",
            keyword=r"ok\d",
            keyword_is_regex=True,
            expected_status=["200-204", "301"],
            json_assertions=[{"path": "status", "op": "eq", "value": "pass"}],
        )
    )
    assert prepared.headers == {"X-A": "1", "Authorization": "Bearer t0ken"}
    assert prepared.body == b"ping"
    assert prepared.pattern is not None
    assert prepared.pattern.search("all ok1")
    assert [a.path for a in prepared.assertions] == ["status"]
    assert [_accepts(prepared.accepted, code) for code in (199, 200, 204, 205, 301)] == [
        False,
        True,
        True,
        False,
        True,
    ]


def test_basic_auth_becomes_an_authorization_header() -> None:
    prepared = _prepared(settings(basic_auth={"username": "monitor", "password": "pa55"}))
    assert prepared.headers == {"Authorization": "Basic bW9uaXRvcjpwYTU1"}


def test_a_url_is_parsed_with_its_address_when_it_is_one() -> None:
    v4 = _target("http://127.0.0.1:8080/a?b=c")
    assert (v4.host, v4.port, v4.secure) == ("127.0.0.1", 8080, False)
    assert v4.literal == (socket.AF_INET, "127.0.0.1")
    assert v4.path == b"/a?b=c"
    v6 = _target("https://[::1]/")
    assert (v6.port, v6.secure, v6.literal) == (443, True, (socket.AF_INET6, "::1"))
    named = _target("https://user:p%40ss@example.com/")
    assert named.literal is None
    assert named.host_line == b"Host: example.com\r\n"
    assert named.url_credentials == b"Authorization: Basic dXNlcjpwQHNz\r\n"


@pytest.mark.parametrize("url", ["ftp://example.com/", "http:///path", "http://h:99999/"])
def test_a_url_that_cannot_be_requested_is_a_protocol_error(url: str) -> None:
    with pytest.raises(HttpClientError) as error:
        _target(url)
    assert error.value.kind == "protocol"


def test_a_tcp_target_is_parsed_with_its_address_when_it_is_one() -> None:
    assert _endpoint("127.0.0.1:22") == ("127.0.0.1", 22, (socket.AF_INET, "127.0.0.1"))
    assert _endpoint("[::1]:22") == ("::1", 22, (socket.AF_INET6, "::1"))
    assert _endpoint("db.example:5432") == ("db.example", 5432, None)
    with pytest.raises(InvalidSettingError):
        _endpoint("db.example")
