"""The lean HTTP client's request head and header rules, without a network."""

from __future__ import annotations

import pytest

from pingtower.pinger.checks.http_client import (
    HttpClient,
    Response,
    _target,
    header_fields,
    header_problem,
)


def head(url: str, method: str = "GET", body: bytes | None = None, **headers: str) -> bytes:
    return HttpClient._head(method, _target(url), headers, body)


def test_the_request_head_names_the_host_and_closes_the_connection() -> None:
    text = head("http://example.com/a?b=c").decode()
    assert text.startswith("GET /a?b=c HTTP/1.1\r\nHost: example.com\r\n")
    assert "Connection: close\r\n" in text
    assert text.endswith("\r\n\r\n")
    assert "Accept-Encoding" not in text  # bodies come uncompressed: nothing to inflate


def test_a_non_default_port_and_an_ipv6_host_appear_in_the_host_header() -> None:
    assert b"Host: [::1]:8080\r\n" in head("http://[::1]:8080/")
    assert b"Host: example.com\r\n" in head("https://example.com:443/")
    assert b"Host: xn--bcher-kva.example\r\n" in head("http://bücher.example/")


def test_a_body_gets_its_length_and_given_headers_win() -> None:
    text = head("http://h/", "POST", b"ping", Host="other", Accept="text/plain").decode()
    assert "Content-Length: 4\r\n" in text
    assert "Host: other\r\n" in text
    assert "Host: h" not in text
    assert text.count("Accept:") == 1


@pytest.mark.parametrize(
    ("name", "value"),
    [("X-A", "1\r\nX-B: 2"), ("X-A\r\nX-B", "2"), ("", "x"), ("X A", "1"), ("X", "\u20ac")],
)
def test_headers_that_could_break_the_request_are_refused(name: str, value: str) -> None:
    assert header_problem(name, value) is not None


def test_ordinary_headers_pass() -> None:
    assert header_problem("X-Request-Id", "abc 123; q=1") is None


def test_the_charset_comes_from_the_content_type() -> None:
    def response(content_type: str) -> Response:
        head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n\r\n".encode()
        return Response(200, head, b"", False, None)

    assert response('text/html; charset="ISO-8859-1"').charset == "ISO-8859-1"
    assert response("application/json").charset is None


def test_header_fields_are_read_from_the_head_as_received_when_first_needed() -> None:
    head = (
        b"HTTP/1.1 302 Found\r\nLocation: /next\r\nSet-Cookie: a=1\r\n"
        b"set-cookie: b=2\r\nContent-Length: 10\r\n\r\npart of th"
    )
    response = Response(302, head, b"", False, None)
    assert response.raw_headers == [
        (b"Location", b"/next"),
        (b"Set-Cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"Content-Length", b"10"),
    ]
    assert response.headers["location"] == "/next"
    assert response.headers["set-cookie"] == "a=1, b=2"


def test_header_fields_of_a_head_cut_short_are_those_before_the_cut() -> None:
    assert header_fields(b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n") == [(b"A", b"1")]
