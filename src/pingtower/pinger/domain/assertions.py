"""JSON assertions on a response body: a path into the document and an expected value or
comparison, e.g. `{"path": "checks.0.status", "op": "eq", "value": "pass"}`.

Paths are dot-separated keys; a number selects a list item. Pure functions, so the HTTP check
only parses the body and reports the first assertion that fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Op = Literal["eq", "ne", "lt", "le", "gt", "ge", "contains", "exists", "absent"]
_MISSING = object()


@dataclass(frozen=True)
class JsonAssertion:
    path: str
    op: Op = "eq"
    value: Any = None


def lookup(document: Any, path: str) -> Any:
    """The value at `path`, or the _MISSING marker."""
    current = document
    for part in path.split(".") if path else []:
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            index = int(part)
            if not -len(current) <= index < len(current):
                return _MISSING
            current = current[index]
        else:
            return _MISSING
    return current


def _compare(found: Any, op: Op, expected: Any) -> bool:
    if op == "eq":
        return bool(found == expected)
    if op == "ne":
        return bool(found != expected)
    if op == "contains":
        if isinstance(found, str):
            return isinstance(expected, str) and expected in found
        return isinstance(found, list | dict) and expected in found
    numbers = (int, float)
    if not isinstance(found, numbers) or not isinstance(expected, numbers):
        return False
    if isinstance(found, bool) or isinstance(expected, bool):
        return False
    if op == "lt":
        return found < expected
    if op == "le":
        return found <= expected
    if op == "gt":
        return found > expected
    return found >= expected  # "ge"


def failed_assertion(document: Any, assertions: list[JsonAssertion]) -> str | None:
    """A message for the first assertion the document breaks, or None if all hold."""
    for assertion in assertions:
        found = lookup(document, assertion.path)
        if assertion.op == "exists":
            if found is _MISSING:
                return f"{assertion.path} is missing"
            continue
        if assertion.op == "absent":
            if found is not _MISSING:
                return f"{assertion.path} is present"
            continue
        if found is _MISSING:
            return f"{assertion.path} is missing"
        if not _compare(found, assertion.op, assertion.value):
            return f"{assertion.path} is {found!r}, expected {assertion.op} {assertion.value!r}"
    return None
