"""JSON assertions on a response body."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pingtower.pinger.domain.assertions import JsonAssertion, failed_assertion

DOC: dict[str, Any] = {
    "status": "pass",
    "version": 3,
    "checks": [{"name": "db", "latency": 12.5}, {"name": "cache", "ok": True}],
    "tags": ["a", "b"],
}


@pytest.mark.parametrize(
    "assertion",
    [
        JsonAssertion("status", "eq", "pass"),
        JsonAssertion("status", "ne", "fail"),
        JsonAssertion("version", "ge", 3),
        JsonAssertion("checks.0.latency", "lt", 100),
        JsonAssertion("checks.-1.ok", "eq", True),
        JsonAssertion("tags", "contains", "b"),
        JsonAssertion("status", "contains", "as"),
        JsonAssertion("checks.1.name", "exists"),
        JsonAssertion("checks.2", "absent"),
    ],
)
def test_assertions_that_hold(assertion: JsonAssertion) -> None:
    assert failed_assertion(DOC, [assertion]) is None


@pytest.mark.parametrize(
    ("assertion", "message"),
    [
        (JsonAssertion("status", "eq", "fail"), "status is 'pass', expected eq 'fail'"),
        (JsonAssertion("checks.0.latency", "gt", 100), "expected gt 100"),
        (JsonAssertion("checks.5.name", "eq", "x"), "checks.5.name is missing"),
        (JsonAssertion("status", "lt", 3), "expected lt 3"),
        (JsonAssertion("checks.1.ok", "gt", 0), "expected gt 0"),
        (JsonAssertion("status", "absent"), "status is present"),
        (JsonAssertion("nope", "exists"), "nope is missing"),
    ],
)
def test_assertions_that_fail_say_why(assertion: JsonAssertion, message: str) -> None:
    failure = failed_assertion(DOC, [assertion])
    assert failure is not None
    assert message in failure


@given(st.dictionaries(st.text(alphabet="abc", min_size=1, max_size=3), st.integers()))
def test_every_key_of_a_flat_document_equals_itself(document: dict[str, int]) -> None:
    assertions = [JsonAssertion(key, "eq", value) for key, value in document.items()]
    assert failed_assertion(document, assertions) is None
