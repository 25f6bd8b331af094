"""The status machine and the evaluator's per-monitor step alone: CPU per result of
`apply_result` and of `Evaluator._apply_monitor`, for the usual states (UP staying UP, PENDING,
DOWN staying DOWN, DOWN recovering, a round of three regions).

    .venv/bin/python -m bench.status_machine [--results 200000] [--repeats 5]

Each case applies the same result to the same state again and again (no database, no
events: `_apply_monitor`'s cases are those that write no event, so its session is never
used). The figure is the best of `--repeats` runs, in process CPU time per result. Compare
code versions by running a copy of the old sources with `PYTHONPATH` (bench/README.md,
performance round 5), alternating runs.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

from pingtower.common.events import CheckCompleted, Outcome, Status
from pingtower.pinger.domain.status import (
    Confirmation,
    MonitorState,
    Observation,
    OpenIncident,
    apply_result,
)
from pingtower.pinger.evaluator.evaluator import Evaluator
from pingtower.pinger.store.states import MonitorColumns, StateColumns

T0 = datetime(2026, 11, 29, 12, tzinfo=UTC)
INCIDENT = OpenIncident(uuid.uuid4(), T0, "connect", "refused")
NO_INCIDENT = uuid.UUID(int=0)


def _machine_case(
    state: MonitorState, outcome: Outcome, confirmation: Confirmation
) -> Callable[[int], None]:
    observation = Observation(outcome, T0 + timedelta(seconds=20), check_id=uuid.uuid4())

    def run(n: int) -> None:
        for _ in range(n):
            apply_result(state, observation, confirmation, incident_id=NO_INCIDENT)

    return run


def _state_row(monitor_id: uuid.UUID, state: MonitorState) -> StateColumns:
    incident = state.incident
    return StateColumns(
        monitor_id,
        state.status.value,
        state.since,
        state.consecutive_failures,
        state.consecutive_successes,
        incident.id if incident else None,
        incident.started_at if incident else None,
        incident.cause if incident else None,
        incident.first_error if incident else None,
        T0,
        None,
        None,
        1,
        1,
    )


def _result(monitor_id: uuid.UUID, outcome: Outcome, region: str) -> CheckCompleted:
    at = T0 + timedelta(seconds=20)
    down = outcome == Outcome.DOWN
    return CheckCompleted(
        check_id=uuid.uuid4(),
        monitor_id=monitor_id,
        region=region,
        scheduled_at=at,
        started_at=at,
        finished_at=at + timedelta(milliseconds=3),
        outcome=outcome,
        latency_ms=3.0,
        status_code=None if down else 200,
        error_kind="connect" if down else None,
        error_message="refused" if down else None,
    )


def _drive(coroutine: Coroutine[Any, Any, int]) -> int:
    """Run a coroutine that never waits (no event is written, so no statement runs)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return int(done.value)
    raise RuntimeError("the step waited: this case writes something")


def _evaluator_case(
    state: MonitorState,
    outcomes: list[Outcome],
    confirmation: Confirmation,
    *,
    regions: int = 1,
) -> Callable[[int], None]:
    """`_apply_monitor` on one round: `outcomes` from as many regions (n counts results)."""
    monitor_id = uuid.uuid4()
    monitor = MonitorColumns(
        monitor_id,
        "bench",
        regions,
        None,
        confirmation.failures_before_down,
        confirmation.successes_before_up,
        None,
        False,
    )
    row = _state_row(monitor_id, state)
    items = [(_result(monitor_id, outcome, f"r{i}"), 2 + i) for i, outcome in enumerate(outcomes)]
    evaluator = Evaluator.__new__(Evaluator)
    step = evaluator._apply_monitor

    def run(n: int) -> None:
        for _ in range(n // len(items)):
            changes: dict[uuid.UUID, dict[str, Any]] = {}
            if _drive(step(None, monitor, row, items, {}, changes, [])) != 1:  # type: ignore[arg-type]
                raise RuntimeError("the round was not applied")

    return run


def cases() -> dict[str, Callable[[int], None]]:
    up = MonitorState(Status.UP, T0, 0, 40)
    pending = MonitorState(Status.PENDING, T0, 1, 0)
    down = MonitorState(Status.DOWN, T0, 5, 0, INCIDENT)
    usual, slow = Confirmation(2, 1), Confirmation(5, 3)
    return {
        "machine: UP stays UP": _machine_case(up, Outcome.UP, usual),
        "machine: PENDING, one more failure": _machine_case(pending, Outcome.DOWN, slow),
        "machine: DOWN stays DOWN": _machine_case(down, Outcome.DOWN, usual),
        "machine: DOWN, 1st of 3 successes": _machine_case(down, Outcome.UP, slow),
        "machine: UP -> PENDING": _machine_case(up, Outcome.DOWN, usual),
        "machine: DOWN -> UP": _machine_case(down, Outcome.UP, usual),
        "step: UP stays UP": _evaluator_case(up, [Outcome.UP], usual),
        "step: PENDING, one more failure": _evaluator_case(pending, [Outcome.DOWN], slow),
        "step: DOWN stays DOWN": _evaluator_case(down, [Outcome.DOWN], usual),
        "step: DOWN, 1st of 3 successes": _evaluator_case(down, [Outcome.UP], slow),
        "step: UP stays UP, 3 regions (2 say)": _evaluator_case(
            up, [Outcome.UP, Outcome.UP], usual, regions=3
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--match", default="", help="only the cases whose name contains this")
    args = parser.parse_args()
    for name, run in cases().items():
        if args.match not in name:
            continue
        run(1000)  # warm
        best = float("inf")
        for _ in range(args.repeats):
            started = time.process_time()
            run(args.results)
            best = min(best, time.process_time() - started)
        print(f"{name:<40} {best / args.results * 1e6:7.3f} us/result")


if __name__ == "__main__":
    main()
