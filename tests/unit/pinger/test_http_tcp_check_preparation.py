"""What the HTTP and TCP checks work out once per monitor rather than per check: settings,
parsed URLs and targets. Without a network."""

from __future__ import annotations

import random
import socket
from typing import Any

import pytest

from pingtower.pinger.checks import http as http_module
from pingtower.pinger.checks.base import ms
from pingtower.pinger.checks.http import HttpCheck, _accepts, _prepared, _prepared_shared
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


def test_a_shared_settings_dict_is_prepared_once_and_found_again_by_identity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shared = settings(keyword="shared")
    first = _prepared_shared(shared)
    assert first is _prepared(shared)  # the same entry as found by the settings' JSON
    # Found again without writing the settings as JSON: the JSON path would now fail.
    monkeypatch.setattr(http_module, "_prepared", _no_json_path)
    assert _prepared_shared(shared) is first
    with pytest.raises(AssertionError, match="JSON path"):
        _prepared_shared(settings(keyword="shared"))  # an equal dict of its own


def test_at_the_bound_the_settings_nothing_else_holds_are_forgotten(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http_module, "SHARED_SETTINGS_KEPT", 4)
    monkeypatch.setattr(http_module, "_BY_IDENTITY", {})
    monkeypatch.setattr(http_module, "_GROWN_TO", [0])
    held = [settings(keyword=f"held {index}") for index in range(2)]
    for given in held:
        _prepared_shared(given)
    for index in range(2):  # dicts of monitors since edited: only the entries hold them
        _prepared_shared(settings(keyword=f"dropped {index}"))
    newest = settings(keyword="newest")
    _prepared_shared(newest)  # the fifth: the two unheld ones are forgotten
    assert set(http_module._BY_IDENTITY) == {id(given) for given in [*held, newest]}


def test_a_fleet_of_held_settings_past_the_bound_stays_prepared_and_unheld_ones_still_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http_module, "SHARED_SETTINGS_KEPT", 4)
    monkeypatch.setattr(http_module, "_BY_IDENTITY", {})
    monkeypatch.setattr(http_module, "_GROWN_TO", [0])
    held = [settings(keyword=f"fleet {index}") for index in range(7)]
    prepared = [_prepared_shared(given) for given in held]
    # The sweep at the fifth freed nothing: the next waits for as many again (8), and every
    # monitor's settings are still found without their JSON.
    assert set(http_module._BY_IDENTITY) == {id(given) for given in held}
    preparing = http_module._prepared
    monkeypatch.setattr(http_module, "_prepared", _no_json_path)
    assert [_prepared_shared(given) for given in held] == prepared
    monkeypatch.setattr(http_module, "_prepared", preparing)
    assert http_module._GROWN_TO == [8]
    # A monitor edited since: its old dict is held by the entry alone and goes at the next
    # sweep (when an entry comes to eight), the fleet's stay.
    del held[0]
    newer, newest = settings(keyword="newer"), settings(keyword="newest")
    _prepared_shared(newer)
    _prepared_shared(newest)
    assert set(http_module._BY_IDENTITY) == {id(given) for given in [*held, newer, newest]}
    assert http_module._GROWN_TO[0] == 2 * (len(held) + 1)


def _no_json_path(_settings: dict[str, Any]) -> None:
    raise AssertionError("the JSON path was taken")


def test_milliseconds_are_rounded_as_round_to_three_digits_rounds_a_clocks_durations() -> None:
    # Durations as a check measures them: the difference of two perf_counter readings, from a
    # microsecond to half a minute, the clock anywhere from a second to months after boot.
    rng = random.Random(3)
    for _ in range(100_000):
        start = rng.uniform(1, 1e7)
        seconds = (start + rng.uniform(0, 30) * 10 ** -rng.randint(0, 6)) - start
        assert ms(seconds) == round(seconds * 1000, 3), (start, seconds)
