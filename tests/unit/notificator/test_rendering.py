"""Default message texts, sandboxed user templates."""

from __future__ import annotations

from typing import Any

import pytest

from pingtower.notificator.channels import ChannelError, Message
from pingtower.notificator.rendering import (
    check_template,
    humanize_seconds,
    render_body,
    render_message,
)


def context(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "monitor": {"id": "m1", "name": "Checkout API", "target": "https://shop.example/health"},
        "since": "2026-11-29T03:00:00+00:00",
        "changed_at": "2026-11-29T03:12:30+00:00",
        "error": "connection refused",
        "link": "https://pingtower.example/monitors/m1",
        "down_for_seconds": None,
        "sequence": 0,
    }
    values.update(overrides)
    return values


def test_a_down_message_says_what_since_when_why_and_where() -> None:
    message = render_message("down", context())
    assert message.title == "DOWN: Checkout API"
    assert "https://shop.example/health" in message.text
    assert "2026-11-29 03:00:00 UTC" in message.text
    assert "connection refused" in message.text
    assert "https://pingtower.example/monitors/m1" in message.text


def test_a_recovery_says_how_long_it_was_down() -> None:
    message = render_message("recovered", context(down_for_seconds=750.0))
    assert message.title == "RECOVERED: Checkout API"
    assert "after 12m 30s" in message.text


def test_a_down_without_error_or_link_still_reads_well() -> None:
    message = render_message("down", context(error=None, link=None))
    assert message.text == (
        "Checkout API (https://shop.example/health) is DOWN since 2026-11-29 03:00:00 UTC."
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (45, "45s"), (60, "1m"), (200, "3m 20s"), (7500, "2h 5m"), (273600, "3d 4h")],
)
def test_durations_are_compact(seconds: int, text: str) -> None:
    assert humanize_seconds(seconds) == text


def test_a_body_template_sees_the_message() -> None:
    message = render_message("down", context())
    body = render_body('{"text": {{ text | tojson }}, "who": "{{ monitor.name }}"}', message)
    assert body.startswith('{"text": "Checkout API')
    assert '"who": "Checkout API"' in body


def test_the_sandbox_refuses_python_internals() -> None:
    message = Message("down", "t", "x", {})
    with pytest.raises(ChannelError, match="template"):
        render_body("{{ ''.__class__.__mro__[1].__subclasses__() }}", message)


def test_a_broken_template_is_reported_at_validation() -> None:
    assert check_template("{{ monitor.name ") is not None
    assert check_template("{{ monitor.name }}") is None
