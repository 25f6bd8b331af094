"""The evaluator's per-monitor step takes a short path for a result that changes only the
counts (`counted_only`): it must leave the state row's changed columns, the decisions written
as events and the count of applied results exactly as the full path (`judge_result` and all
of `decision_values` for every result) leaves them, over any batch of one monitor's results."""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pingtower.common.events import CheckCompleted, Outcome, Status
from pingtower.pinger.domain.status import Decision
from pingtower.pinger.evaluator import evaluator as evaluator_module
from pingtower.pinger.evaluator.evaluator import Evaluator
from pingtower.pinger.store.states import MonitorColumns, StateColumns

T0 = datetime(2026, 11, 29, 12, tzinfo=UTC)
MONITOR = uuid.UUID(int=7)
INCIDENT = uuid.UUID(int=99)


def _drive(coroutine: Coroutine[Any, Any, int]) -> int:
    """Run the step to its end: with its events recorded in memory it never waits."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return int(done.value)
    raise AssertionError("the step waited on something")


@st.composite
def state_rows(draw: st.DrawFn) -> StateColumns:
    status = draw(st.sampled_from(list(Status)))
    down = status == Status.DOWN or (
        status in (Status.PAUSED, Status.MAINTENANCE) and draw(st.booleans())
    )
    round_at = draw(st.one_of(st.none(), st.integers(0, 4)))
    return StateColumns(
        MONITOR,
        status.value,
        T0,
        draw(st.integers(0, 4)),
        draw(st.integers(0, 4)),
        INCIDENT if down else None,
        T0 if down else None,
        "connect" if down else None,
        None,
        draw(st.one_of(st.none(), st.just(T0))),
        None if round_at is None else T0 + timedelta(seconds=20 * round_at),
        None if round_at is None else {"r0": draw(st.sampled_from(["up", "down"]))},
        1,
        draw(st.sampled_from([1, 9])),
    )


# (outcome, round number, region): rounds may repeat, go back (stale) or skip ahead
results = st.lists(
    st.tuples(st.sampled_from(list(Outcome)), st.integers(0, 6), st.sampled_from(["r0", "r1"])),
    min_size=1,
    max_size=12,
)


def _items(seq: list[tuple[Outcome, int, str]]) -> list[tuple[CheckCompleted, int]]:
    items = []
    for n, (outcome, round_, region) in enumerate(seq):
        at = T0 + timedelta(seconds=20 * round_)
        down = outcome == Outcome.DOWN
        result = CheckCompleted(
            check_id=uuid.UUID(int=1000 + n),
            monitor_id=MONITOR,
            region=region,
            scheduled_at=at,
            started_at=at,
            finished_at=at + timedelta(milliseconds=3),
            outcome=outcome,
            latency_ms=3.0,
            error_kind="connect" if down else None,
            error_message="refused" if down else None,
        )
        items.append((result, 10 + n))
    return items


class RecordingBatch:
    """The step's batch, recording the decisions it writes as events."""

    def __init__(self, events: list[Decision]) -> None:
        self.events = events

    async def add_decision_events(self, *, decision: Decision, **_: Any) -> None:
        self.events.append(decision)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[Decision]:
    """The decisions the step writes as events; incident ids and `changed_at` made
    reproducible, so two runs over the same input can be compared."""
    monkeypatch.setattr("pingtower.pinger.store.states.utcnow", lambda: T0)
    return []


FRESH = 5000  # the first of the fresh incident ids the step is given


def _renamed(value: object) -> str:
    """`repr(value)` with each fresh incident id replaced by its order of appearance: the
    full path draws a fresh id for every failure it judges, the quiet path none for a failure
    it only counts, so one incident may get a later id from one path than from the other."""
    names: dict[str, str] = {}

    def name(found: re.Match[str]) -> str:
        if uuid.UUID(found[1]).int < FRESH:
            return found[0]
        return names.setdefault(found[1], f"fresh incident {len(names)}")

    return re.sub(r"UUID\('([0-9a-f-]+)'\)", name, repr(value))


def _run(
    row: StateColumns,
    monitor: MonitorColumns,
    seq: list[tuple[Outcome, int, str]],
    events: list[Decision],
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """What the step did (applied count, changed columns, decisions written as events), its
    fresh incident ids renamed (`_renamed`)."""
    events.clear()
    ids = (uuid.UUID(int=FRESH + n) for n in itertools.count())
    changes: dict[uuid.UUID, dict[str, Any]] = {}
    step = Evaluator.__new__(Evaluator)._apply_monitor
    batch = RecordingBatch(events)
    with monkeypatch.context() as patched:
        patched.setattr(uuid, "uuid4", lambda: next(ids))  # incident ids, in order
        applied = _drive(step(batch, monitor, row, _items(seq), {}, changes))  # type: ignore[arg-type]
    in_order = {monitor_id: sorted(values.items()) for monitor_id, values in changes.items()}
    return _renamed((applied, in_order, events))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(
    state_rows(),
    results,
    st.sampled_from([1, 2]),
    st.integers(1, 4),
    st.integers(1, 3),
)
def test_the_quiet_path_changes_what_the_full_path_changes(
    recorded: list[Decision],
    monkeypatch: pytest.MonkeyPatch,
    row: StateColumns,
    seq: list[tuple[Outcome, int, str]],
    regions: int,
    failures: int,
    successes: int,
) -> None:
    monitor = MonitorColumns(MONITOR, "acme", regions, None, failures, successes, None, False)
    fast = _run(row, monitor, seq, recorded, monkeypatch)
    with monkeypatch.context() as full_path:
        full_path.setattr(evaluator_module, "counted_only", lambda *_: None)
        full = _run(row, monitor, seq, recorded, monkeypatch)
    assert fast == full
