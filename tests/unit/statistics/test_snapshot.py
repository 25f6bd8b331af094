"""The background latency snapshot is used only while fresh."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from pingtower.statistics.snapshot import LatencySnapshot

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
MONITOR = uuid.uuid4()


def test_a_snapshot_is_used_until_it_is_older_than_its_max_age() -> None:
    snapshot = LatencySnapshot(max_age=timedelta(minutes=2))
    assert snapshot.fresh(NOW) == {}
    snapshot.update(NOW, {MONITOR: 120.0})
    assert snapshot.fresh(NOW + timedelta(minutes=2)) == {MONITOR: 120.0}
    assert snapshot.fresh(NOW + timedelta(minutes=2, seconds=1)) == {}


def test_a_snapshot_taken_after_the_asked_time_is_not_used() -> None:
    snapshot = LatencySnapshot()
    snapshot.update(NOW, {MONITOR: 120.0})
    assert snapshot.fresh(NOW - timedelta(seconds=1)) == {}
