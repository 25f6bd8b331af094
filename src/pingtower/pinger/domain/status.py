"""The status machine: how one check result moves a monitor's status, and when incidents open
and close. Pure functions over frozen values, so the rules can be tested exhaustively.

Rules (N = failures_before_down, M = successes_before_up):
- UNKNOWN until the first result.
- A failed result that is not yet the N-th in a row makes the monitor PENDING (a blip is not an
  outage); the N-th consecutive failure makes it DOWN and opens an incident.
- While DOWN, M consecutive successes bring it back (UP, or DEGRADED if the last check said so)
  and resolve the incident. Outside DOWN, one success is enough: nothing was confirmed.
- A paused monitor ignores results. On resume it is UNKNOWN again, or still DOWN if its incident
  is open: an outage ends by recovery, never by pausing. A transition is never dated before the
  status it leaves began (a check that ran during the pause may report after the resume).
- During a maintenance window the monitor is MAINTENANCE: checks go on, counts start afresh,
  no incident opens or closes. An outage open when the window began is still open after it.
- An incident is open exactly while the monitor is DOWN (or paused or in maintenance while an
  outage is open).
- With several regions, the results of one scheduled round are first combined into one
  observation by `round_verdict` (k of n regions must fail for the round to fail).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from pingtower.common.events import Outcome, Status


@dataclass(frozen=True)
class Confirmation:
    """How many results in a row confirm a change."""

    failures_before_down: int = 2
    successes_before_up: int = 1

    def __post_init__(self) -> None:
        if self.failures_before_down < 1 or self.successes_before_up < 1:
            raise ValueError("confirmation counts must be at least 1")


@dataclass(frozen=True)
class OpenIncident:
    id: uuid.UUID
    started_at: datetime
    cause: str | None = None
    first_error: str | None = None


@dataclass(frozen=True)
class MonitorState:
    status: Status = Status.UNKNOWN
    since: datetime | None = None
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    incident: OpenIncident | None = None


@dataclass(frozen=True)
class Observation:
    """One check result as the status machine needs it."""

    outcome: Outcome
    at: datetime
    check_id: uuid.UUID | None = None
    error_kind: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class Transition:
    previous: Status
    current: Status
    at: datetime
    reason: str


@dataclass(frozen=True)
class Decision:
    """The new state and what happened on the way (each at most once per result)."""

    state: MonitorState
    transition: Transition | None = None
    opened: OpenIncident | None = None
    resolved: OpenIncident | None = None


def _move(state: MonitorState, status: Status, at: datetime, reason: str) -> Decision:
    if status == state.status:
        return Decision(state)
    if state.since is not None and at < state.since:
        # A check that ran while the monitor was paused may report after the resume: its
        # change is dated at the resume, never before the status it follows, so every
        # consumer's timeline stays in order.
        at = state.since
    return Decision(
        replace(state, status=status, since=at), Transition(state.status, status, at, reason)
    )


def apply_result(
    state: MonitorState,
    observation: Observation,
    confirmation: Confirmation,
    *,
    incident_id: uuid.UUID,
    in_maintenance: bool = False,
) -> Decision:
    """Apply one result. `incident_id` is used only if this result opens an incident."""
    if state.status == Status.PAUSED:
        return Decision(state)
    if in_maintenance:
        # Checks go on, but nothing counts towards an outage and nothing opens or closes.
        quiet = replace(state, consecutive_failures=0, consecutive_successes=0)
        return _move(quiet, Status.MAINTENANCE, observation.at, "maintenance window")
    if state.status == Status.MAINTENANCE:
        return _after_maintenance(state, observation, confirmation, incident_id)
    if observation.outcome == Outcome.DOWN:
        return _failure(state, observation, confirmation, incident_id)
    return _success(state, observation, confirmation)


def _after_maintenance(
    state: MonitorState, obs: Observation, confirmation: Confirmation, incident_id: uuid.UUID
) -> Decision:
    """The first result after a window is judged as if the monitor had been UNKNOWN (or DOWN,
    if an outage was open when the window began), and reported as leaving MAINTENANCE."""
    base = replace(state, status=Status.DOWN if state.incident else Status.UNKNOWN)
    decision = apply_result(base, obs, confirmation, incident_id=incident_id)
    reason = decision.transition.reason if decision.transition else "maintenance ended"
    moved = replace(decision.state, since=obs.at)
    transition = Transition(Status.MAINTENANCE, moved.status, obs.at, reason)
    return replace(decision, state=moved, transition=transition)


def _failure(
    state: MonitorState, obs: Observation, confirmation: Confirmation, incident_id: uuid.UUID
) -> Decision:
    counted = replace(
        state, consecutive_failures=state.consecutive_failures + 1, consecutive_successes=0
    )
    if counted.status == Status.DOWN:
        return Decision(counted)
    if counted.consecutive_failures < confirmation.failures_before_down:
        reason = f"{counted.consecutive_failures} of {confirmation.failures_before_down} failures"
        return _move(counted, Status.PENDING, obs.at, reason)
    incident = counted.incident or OpenIncident(
        incident_id, obs.at, obs.error_kind, obs.error_message
    )
    moved = _move(
        replace(counted, incident=incident),
        Status.DOWN,
        obs.at,
        f"{counted.consecutive_failures} consecutive failures",
    )
    opened = incident if counted.incident is None else None
    return replace(moved, opened=opened)


def _success(state: MonitorState, obs: Observation, confirmation: Confirmation) -> Decision:
    counted = replace(
        state, consecutive_successes=state.consecutive_successes + 1, consecutive_failures=0
    )
    target = Status.DEGRADED if obs.outcome == Outcome.DEGRADED else Status.UP
    if counted.status == Status.DOWN:
        if counted.consecutive_successes < confirmation.successes_before_up:
            return Decision(counted)
        resolved = counted.incident
        moved = _move(
            replace(counted, incident=None),
            target,
            obs.at,
            f"{counted.consecutive_successes} consecutive successes",
        )
        return replace(moved, resolved=resolved)
    reason = "check degraded" if target == Status.DEGRADED else "check succeeded"
    return _move(counted, target, obs.at, reason)


def pause(state: MonitorState, at: datetime) -> Decision:
    """Stop judging the monitor; counts start afresh on resume."""
    paused = replace(state, consecutive_failures=0, consecutive_successes=0)
    return _move(paused, Status.PAUSED, at, "paused")


def resume(state: MonitorState, at: datetime) -> Decision:
    if state.status != Status.PAUSED:
        return Decision(state)
    status = Status.DOWN if state.incident is not None else Status.UNKNOWN
    return _move(state, status, at, "resumed")


# --- several regions ------------------------------------------------------------------------


def majority(regions: int) -> int:
    return regions // 2 + 1


def round_verdict(outcomes: Mapping[str, Outcome], *, regions: int, quorum: int) -> Outcome | None:
    """What one round of checks (one scheduled time, one result per region) says, as soon as it
    can be told: DOWN once `quorum` regions failed; UP (or DEGRADED if a region saw that) once
    so many succeeded that `quorum` failures are no longer possible; None while undecided.

    So a failure counts only when at least k of the n regions see it, and a region that never
    answers cannot hold a success back once the others outvote it.
    """
    quorum = min(max(quorum, 1), regions)
    failures = sum(outcome == Outcome.DOWN for outcome in outcomes.values())
    if failures >= quorum:
        return Outcome.DOWN
    successes = len(outcomes) - failures
    if successes > regions - quorum:
        degraded = any(outcome == Outcome.DEGRADED for outcome in outcomes.values())
        return Outcome.DEGRADED if degraded else Outcome.UP
    return None
