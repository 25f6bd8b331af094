"""Schedule maths: stable offsets, even spreading, no burst after a restart."""

from __future__ import annotations

import math
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pingtower.pinger.domain.monitor import InvalidSettingError
from pingtower.pinger.domain.schedule import (
    deadline,
    next_cron,
    next_run,
    offset_fraction,
    ranked_fractions,
    spread,
    validate_cron,
)


def test_offset_is_stable_for_one_monitor() -> None:
    monitor = uuid.UUID("6f0c6a55-5a2f-4c1b-9a47-2f0d3d7b9e11")
    assert offset_fraction(monitor) == offset_fraction(uuid.UUID(str(monitor)))
    assert 0 <= offset_fraction(monitor) < 1


def seconds_histogram(fractions: dict[uuid.UUID, float], interval: int) -> Counter[int]:
    return Counter(int(next_run(0.0, interval, f)) % interval for f in fractions.values())


@given(
    st.lists(st.uuids(version=4), min_size=1, max_size=400, unique=True),
    st.integers(min_value=1, max_value=120),
    st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_monitors_with_one_interval_are_spread_over_it(
    ids: list[uuid.UUID], interval: int, phase: float
) -> None:
    per_second = seconds_histogram(spread(ids, phase), interval)
    assert max(per_second.values()) <= math.ceil(len(ids) / interval) + 1


@pytest.mark.parametrize(("count", "interval"), [(50_000, 30), (7, 60), (600, 60)])
def test_large_groups_are_spread_evenly(count: int, interval: int) -> None:
    ids = [uuid.uuid4() for _ in range(count)]
    per_second = seconds_histogram(spread(ids), interval)
    assert max(per_second.values()) <= math.ceil(count / interval) + 1


def test_independent_hashes_alone_would_crowd_some_seconds() -> None:
    """Why `spread` ranks: 6,000 hashed offsets over 60 s put far more than 101 in some second."""
    ids = [uuid.UUID(int=i * 7919 + 1, version=4) for i in range(6_000)]
    hashed = Counter(int(next_run(0.0, 60, offset_fraction(i))) % 60 for i in ids)
    assert max(hashed.values()) > math.ceil(6_000 / 60) + 1


@given(st.lists(st.uuids(), min_size=1, max_size=100, unique=True), st.randoms())
def test_spread_does_not_depend_on_the_order_monitors_are_loaded(
    ids: list[uuid.UUID], rng: Any
) -> None:
    shuffled = list(ids)
    rng.shuffle(shuffled)
    assert spread(ids, 0.25) == spread(shuffled, 0.25)


@given(
    st.lists(st.uuids(), min_size=1, max_size=100, unique=True), st.floats(0, 1, exclude_max=True)
)
def test_spread_with_cached_hashes_is_the_same_spread(ids: list[uuid.UUID], phase: float) -> None:
    cached = {monitor_id: offset_fraction(monitor_id) for monitor_id in ids}
    assert spread(ids, phase, fraction=cached.__getitem__) == spread(ids, phase)


@given(
    st.lists(st.uuids(), min_size=1, max_size=100, unique=True), st.floats(0, 1, exclude_max=True)
)
def test_ranked_fractions_are_the_spread_of_monitors_ranked_by_hash_then_id(
    ids: list[uuid.UUID], phase: float
) -> None:
    # As the scheduler ranks its entries: by the hash it keeps, then by id.
    ranked = sorted(ids, key=lambda monitor_id: (offset_fraction(monitor_id), monitor_id))
    fractions = ranked_fractions(len(ranked), phase)
    assert dict(zip(ranked, fractions, strict=True)) == spread(ids, phase)


@given(st.lists(st.uuids(), min_size=1, max_size=200, unique=True), st.uuids())
def test_adding_a_monitor_moves_each_other_one_by_at_most_one_slot(
    ids: list[uuid.UUID], added: uuid.UUID
) -> None:
    if added in ids:
        return
    before = spread(ids)
    after = spread([*ids, added])
    for monitor_id, fraction in before.items():
        assert abs(after[monitor_id] - fraction) <= 1 / len(ids) + 1e-9


@given(
    st.floats(min_value=0, max_value=2e9),
    st.integers(min_value=1, max_value=86_400),
    st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_next_run_is_the_next_grid_point(now: float, interval: int, fraction: float) -> None:
    due = next_run(now, interval, fraction)
    assert now < due <= now + interval + 1e-6
    # On the monitor's grid: the same phase whatever `now` was.
    phase = (due - fraction * interval) / interval
    assert abs(phase - round(phase)) < 1e-6


def test_a_restart_resumes_the_same_grid_without_a_burst() -> None:
    monitor = uuid.uuid4()
    fraction = offset_fraction(monitor)
    before = next_run(1_000.0, 60, fraction)
    after_restart = next_run(1_030.0, 60, fraction)
    assert any(abs(after_restart - expected) < 1e-6 for expected in (before, before + 60))


def test_a_job_expires_when_the_next_one_is_due() -> None:
    assert deadline(100.0, 30) == 130.0


def test_next_run_refuses_a_zero_interval() -> None:
    with pytest.raises(ValueError, match="positive"):
        next_run(0.0, 0, 0.5)


def test_cron_runs_at_wall_clock_times_in_its_zone() -> None:
    # 03:00 in Berlin is 02:00 UTC in winter.
    after = datetime(2026, 11, 29, 12, tzinfo=UTC).timestamp()
    due = next_cron("0 3 * * *", "Europe/Berlin", after)
    assert datetime.fromtimestamp(due, UTC) == datetime(2026, 11, 30, 2, tzinfo=UTC)


def test_cron_next_run_is_strictly_after() -> None:
    exactly = datetime(2026, 11, 29, 12, 5, tzinfo=UTC).timestamp()
    assert next_cron("*/5 * * * *", "UTC", exactly) == exactly + 300


def test_cron_validation_names_the_field() -> None:
    for expression in ("every day", "61 * * * *"):
        with pytest.raises(InvalidSettingError) as error:
            validate_cron(expression, "UTC", 10)
        assert error.value.field == "cron"
    with pytest.raises(InvalidSettingError) as error:
        validate_cron("* * * * *", "UTC", 120)
    assert error.value.field == "cron"
    with pytest.raises(InvalidSettingError) as error:
        validate_cron("* * * * *", "Atlantis/Capital", 10)
    assert error.value.field == "timezone"
    validate_cron("*/5 * * * *", "Europe/Berlin", 60)
