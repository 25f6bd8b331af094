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


def test_a_late_heartbeat_says_late_not_down() -> None:
    message = render_message(
        "down",
        context(
            monitor={"id": "m1", "name": "nightly backup", "target": "", "type": "heartbeat"},
            heartbeat_late=True,
            error="no ping within the period and grace time",
            incident_id="4f1c",
        ),
    )
    assert message.title == "LATE: heartbeat nightly backup"
    assert "LATE since 2026-11-29 03:00:00 UTC" in message.text
    assert "DOWN" not in message.text
    assert "Incident: 4f1c" in message.text


def test_a_down_queued_before_the_heartbeat_flag_existed_still_renders() -> None:
    message = render_message("down", context())
    assert message.title == "DOWN: Checkout API"


def test_a_latency_alert_names_the_latency_the_threshold_and_the_run() -> None:
    message = render_message("latency", context(latency_ms=812.4, threshold_ms=500.0, checks=3))
    assert message.title == "SLOW: Checkout API above 500 ms"
    assert "answered in 812 ms, above 500 ms for 3 checks in a row" in message.text


def test_a_certificate_warning_names_the_expiry_and_the_days_left() -> None:
    message = render_message(
        "cert_expiring",
        context(expires_at="2026-12-05T00:00:00+00:00", days_left=5.8, threshold_days=7),
    )
    assert message.title == "CERTIFICATE EXPIRING: Checkout API in 6 days"
    assert "expires at 2026-12-05 00:00:00 UTC (6 days left; warning at 7 days)" in message.text
    expired = render_message(
        "cert_expiring",
        context(expires_at="2026-11-28T00:00:00+00:00", days_left=-1.2, threshold_days=1),
    )
    assert "expired at 2026-11-28" in expired.text


def test_an_slo_over_a_tag_names_the_tag_and_the_burn_rates() -> None:
    slo = {"id": "s1", "tag": "prod", "objective": 0.999, "burn_rate_long": 15.24,
           "burn_rate_short": 20.1, "long_window_seconds": 3600, "short_window_seconds": 300,
           "threshold": 14.4}  # fmt: skip
    message = render_message("slo", context(monitor=None, slo=slo))
    assert message.title == "SLO BURNING: tag prod"
    assert "(99.9%) burns its error budget 15.2x too fast over 1h (20.1x over 5m" in message.text
