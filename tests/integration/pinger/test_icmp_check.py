"""ICMP check against 127.0.0.1."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from pingtower.common.events import CheckJob, Outcome, utcnow
from pingtower.pinger.checks.base import CheckContext, get_check
from pingtower.pinger.checks.icmp import IcmpUnavailableError, open_icmp_socket


@pytest.fixture
def session_context() -> CheckContext:
    return CheckContext(allow_private=True)


def icmp_job(target: str, **settings: object) -> CheckJob:
    now = utcnow()
    return CheckJob(
        monitor_id=uuid.uuid4(),
        check_type="icmp",
        target=target,
        settings=settings,
        timeout_seconds=5,
        scheduled_at=now,
        deadline=now + timedelta(seconds=60),
    )


def icmp_available() -> bool:
    try:
        sock, _raw = open_icmp_socket()
    except IcmpUnavailableError:
        return False
    sock.close()
    return True


async def test_pinging_loopback_reports_round_trips_or_says_why_it_cannot(
    session_context: CheckContext,
) -> None:
    result = await get_check("icmp").run(
        icmp_job("127.0.0.1", count=3, interval_ms=20), session_context
    )
    if icmp_available():
        assert result.outcome == Outcome.UP, result.error_message
        assert result.phases_ms["loss_percent"] == 0.0
        assert result.phases_ms["rtt_min"] <= result.phases_ms["rtt_avg"]
        assert result.phases_ms["rtt_avg"] <= result.phases_ms["rtt_max"]
    else:
        # Neither raw nor datagram ICMP sockets: the result says so, clearly.
        assert result.error_kind == "config"
        assert "ping_group_range" in (result.error_message or "")


async def test_pinging_loopback_is_refused_when_private_targets_are_not_allowed(
    session_context: CheckContext,
) -> None:
    context = CheckContext(allow_private=False)
    result = await get_check("icmp").run(icmp_job("127.0.0.1"), context)
    assert result.error_kind == "blocked"
