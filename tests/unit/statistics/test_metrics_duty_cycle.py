"""The metrics snapshot's pacing and its per-monitor gauges, without a database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from pingtower.common.events import Status
from pingtower.statistics.domain.uptime import StatusInterval
from pingtower.statistics.service import monitor_sample, pause_after
from pingtower.statistics.store.queries import MonitorFacts

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
DAY = NOW - timedelta(hours=24)
PERIOD = timedelta(seconds=30)


def test_a_quick_run_waits_the_period() -> None:
    assert pause_after(PERIOD, timedelta(milliseconds=200), 0.04) == PERIOD


def test_a_slow_run_waits_so_that_the_work_takes_its_share_of_the_time() -> None:
    took = timedelta(seconds=4)
    pause = pause_after(PERIOD, took, 0.04)
    assert pause == timedelta(seconds=96)
    assert took / (took + pause) == pytest.approx(0.04)


@pytest.mark.parametrize("share", [0.0, -0.1, 1.5])
def test_a_share_outside_zero_to_one_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="share"):
        pause_after(PERIOD, PERIOD, share)


def facts(status: Status | None, since: datetime | None, *, paused: bool = False) -> MonitorFacts:
    return MonitorFacts(uuid.UUID(int=7), "acme", "shop", paused, 12.5, status, since)


def test_uptime_counts_the_closed_intervals_in_the_window_and_the_open_one() -> None:
    closed = [
        StatusInterval(DAY - timedelta(hours=2), DAY + timedelta(hours=6), Status.UP),
        StatusInterval(DAY + timedelta(hours=6), DAY + timedelta(hours=12), Status.DOWN),
    ]
    sample = monitor_sample(facts(Status.UP, DAY + timedelta(hours=12)), closed, DAY, NOW)
    assert sample.status is Status.UP
    assert sample.uptime_24h == pytest.approx(18 / 24)
    assert (sample.tenant, sample.monitor_id, sample.name) == (
        "acme",
        str(uuid.UUID(int=7)),
        "shop",
    )
    assert sample.last_latency_ms == 12.5


def test_a_monitor_without_a_known_status_is_unknown_with_no_uptime() -> None:
    sample = monitor_sample(facts(None, None), [], DAY, NOW)
    assert sample.status is Status.UNKNOWN
    assert sample.uptime_24h is None


def test_a_paused_monitor_shows_paused_whatever_its_last_status() -> None:
    sample = monitor_sample(facts(Status.DOWN, DAY, paused=True), [], DAY, NOW)
    assert sample.status is Status.PAUSED
    assert sample.uptime_24h == 0.0
