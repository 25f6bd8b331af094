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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pingtower.common.events import Outcome, Status


@dataclass(frozen=True)
class Confirmation:
    """How many results in a row confirm a change."""

    failures_before_down: int = 2
    successes_before_up: int = 1

    def __post_init__(self) -> None:
        if self.failures_before_down < 1 or self.successes_before_up < 1:
            raise ValueError("confirmation counts must be at least 1")


@dataclass(frozen=True, slots=True)
class OpenIncident:
    id: uuid.UUID
    started_at: datetime
    cause: str | None = None
    first_error: str | None = None


# MonitorState and Decision are made per result: their `__init__` is written out, setting
# the slots through their own setters, where the frozen dataclass's sets each field through
# `object.__setattr__` (twice as slow; it was a third of the status machine's cost). The
# class is the same frozen dataclass otherwise (fields, equality, hash, `replace`).
@dataclass(frozen=True, slots=True, init=False)
class MonitorState:
    status: Status = Status.UNKNOWN
    since: datetime | None = None
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    incident: OpenIncident | None = None

    def __init__(
        self,
        status: Status = Status.UNKNOWN,
        since: datetime | None = None,
        consecutive_failures: int = 0,
        consecutive_successes: int = 0,
        incident: OpenIncident | None = None,
    ) -> None:
        _set_status(self, status)
        _set_since(self, since)
        _set_failures(self, consecutive_failures)
        _set_successes(self, consecutive_successes)
        _set_incident(self, incident)


@dataclass(frozen=True, slots=True)
class Observation:
    """One check result as the status machine needs it."""

    outcome: Outcome
    at: datetime
    check_id: uuid.UUID | None = None
    error_kind: str | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    previous: Status
    current: Status
    at: datetime
    reason: str


@dataclass(frozen=True, slots=True, init=False)
class Decision:
    """The new state and what happened on the way (each at most once per result)."""

    state: MonitorState
    transition: Transition | None = None
    opened: OpenIncident | None = None
    resolved: OpenIncident | None = None

    def __init__(
        self,
        state: MonitorState,
        transition: Transition | None = None,
        opened: OpenIncident | None = None,
        resolved: OpenIncident | None = None,
    ) -> None:
        _set_state(self, state)
        _set_transition(self, transition)
        _set_opened(self, opened)
        _set_resolved(self, resolved)


def _setters(cls: type, *fields: str) -> tuple[Callable[[object, Any], None], ...]:
    return tuple(getattr(cls, field).__set__ for field in fields)


_set_status, _set_since, _set_failures, _set_successes, _set_incident = _setters(
    MonitorState, "status", "since", "consecutive_failures", "consecutive_successes", "incident"
)
_set_state, _set_transition, _set_opened, _set_resolved = _setters(
    Decision, "state", "transition", "opened", "resolved"
)

_UP, _DEGRADED, _DOWN = Outcome.UP, Outcome.DEGRADED, Outcome.DOWN
_UP_STATUS, _DEGRADED_STATUS, _DOWN_STATUS = Status.UP, Status.DEGRADED, Status.DOWN
_PENDING, _PAUSED, _MAINTENANCE = Status.PENDING, Status.PAUSED, Status.MAINTENANCE


def counted_only(
    state: MonitorState, outcome: Outcome, confirmation: Confirmation
) -> MonitorState | None:
    """The state after a result (outside a maintenance window) that changes nothing but the
    counts, as `judge_result` would make it; None for any other result. Such are nearly all
    results: UP (or DEGRADED) staying so, DOWN staying DOWN, PENDING short of N failures, DOWN
    short of M successes. They make no transition and open or resolve nothing. (A status
    given as a plain string is left to `judge_result`: the tests here are by identity.)"""
    status = state.status
    if outcome == _DOWN:
        failures = state.consecutive_failures + 1
        if status is _DOWN_STATUS or (
            status is _PENDING and failures < confirmation.failures_before_down
        ):
            return MonitorState(status, state.since, failures, 0, state.incident)
        return None
    successes = state.consecutive_successes + 1
    if status is (_DEGRADED_STATUS if outcome == _DEGRADED else _UP_STATUS) or (
        status is _DOWN_STATUS and successes < confirmation.successes_before_up
    ):
        return MonitorState(status, state.since, 0, successes, state.incident)
    return None


def _move(state: MonitorState, status: Status, at: datetime, reason: str) -> Decision:
    if status == state.status:
        return Decision(state)
    if state.since is not None and at < state.since:
        # A check that ran while the monitor was paused may report after the resume: its
        # change is dated at the resume, never before the status it follows, so every
        # consumer's timeline stays in order.
        at = state.since
    moved = MonitorState(
        status, at, state.consecutive_failures, state.consecutive_successes, state.incident
    )
    return Decision(moved, Transition(state.status, status, at, reason))


def apply_result(
    state: MonitorState,
    observation: Observation,
    confirmation: Confirmation,
    *,
    incident_id: uuid.UUID,
    in_maintenance: bool = False,
) -> Decision:
    """Apply one result. `incident_id` is used only if this result opens an incident.

    The usual result changes only the counts (`counted_only`); the others are judged by the
    full rules (`judge_result`). A property test holds the two to the same decisions."""
    if not in_maintenance:
        counted = counted_only(state, observation.outcome, confirmation)
        if counted is not None:
            return Decision(counted)
    return judge_result(
        state, observation, confirmation, incident_id=incident_id, in_maintenance=in_maintenance
    )


def judge_result(
    state: MonitorState,
    observation: Observation,
    confirmation: Confirmation,
    *,
    incident_id: uuid.UUID,
    in_maintenance: bool = False,
) -> Decision:
    """`apply_result` by the full rules, for every result (the reference of its fast path)."""
    if state.status == _PAUSED:
        return Decision(state)
    if in_maintenance:
        # Checks go on, but nothing counts towards an outage and nothing opens or closes.
        quiet = MonitorState(state.status, state.since, 0, 0, state.incident)
        return _move(quiet, _MAINTENANCE, observation.at, "maintenance window")
    if state.status == _MAINTENANCE:
        return _after_maintenance(state, observation, confirmation, incident_id)
    if observation.outcome == _DOWN:
        return _failure(state, observation, confirmation, incident_id)
    return _success(state, observation, confirmation)


def _after_maintenance(
    state: MonitorState, obs: Observation, confirmation: Confirmation, incident_id: uuid.UUID
) -> Decision:
    """The first result after a window is judged as if the monitor had been UNKNOWN (or DOWN,
    if an outage was open when the window began), and reported as leaving MAINTENANCE."""
    base = replace(state, status=Status.DOWN if state.incident else Status.UNKNOWN)
    decision = judge_result(base, obs, confirmation, incident_id=incident_id)
    reason = decision.transition.reason if decision.transition else "maintenance ended"
    moved = replace(decision.state, since=obs.at)
    transition = Transition(Status.MAINTENANCE, moved.status, obs.at, reason)
    return replace(decision, state=moved, transition=transition)


def _failure(
    state: MonitorState, obs: Observation, confirmation: Confirmation, incident_id: uuid.UUID
) -> Decision:
    failures = state.consecutive_failures + 1
    counted = MonitorState(state.status, state.since, failures, 0, state.incident)
    if counted.status == _DOWN_STATUS:
        return Decision(counted)
    if failures < confirmation.failures_before_down:
        reason = f"{failures} of {confirmation.failures_before_down} failures"
        return _move(counted, _PENDING, obs.at, reason)
    incident = counted.incident or OpenIncident(
        incident_id, obs.at, obs.error_kind, obs.error_message
    )
    moved = _move(
        MonitorState(counted.status, counted.since, failures, 0, incident),
        _DOWN_STATUS,
        obs.at,
        f"{failures} consecutive failures",
    )
    opened = incident if counted.incident is None else None
    return Decision(moved.state, moved.transition, opened, moved.resolved)


def _success(state: MonitorState, obs: Observation, confirmation: Confirmation) -> Decision:
    successes = state.consecutive_successes + 1
    counted = MonitorState(state.status, state.since, 0, successes, state.incident)
    target = _DEGRADED_STATUS if obs.outcome == _DEGRADED else _UP_STATUS
    if counted.status == _DOWN_STATUS:
        if successes < confirmation.successes_before_up:
            return Decision(counted)
        resolved = counted.incident
        moved = _move(
            MonitorState(counted.status, counted.since, 0, successes, None),
            target,
            obs.at,
            f"{successes} consecutive successes",
        )
        return Decision(moved.state, moved.transition, moved.opened, resolved)
    reason = "check degraded" if target == _DEGRADED_STATUS else "check succeeded"
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


# A round of one region with its one result: DOWN and DEGRADED stand, any other outcome is UP.
_SINGLE_VERDICT = {_DOWN: _DOWN, _DEGRADED: _DEGRADED}


def single_region_verdict(outcome: Outcome) -> Outcome:
    """`round_verdict` of a round of one region and its one outcome, without the mapping (the
    usual monitor's every result; a test holds the two equal)."""
    return _SINGLE_VERDICT.get(outcome, _UP)


def round_verdict(outcomes: Mapping[str, Outcome], *, regions: int, quorum: int) -> Outcome | None:
    """What one round of checks (one scheduled time, one result per region) says, as soon as it
    can be told: DOWN once `quorum` regions failed; UP (or DEGRADED if a region saw that) once
    so many succeeded that `quorum` failures are no longer possible; None while undecided.

    So a failure counts only when at least k of the n regions see it, and a region that never
    answers cannot hold a success back once the others outvote it.
    """
    quorum = min(max(quorum, 1), regions)
    failures = 0
    degraded = False
    for outcome in outcomes.values():
        if outcome == _DOWN:
            failures += 1
        elif outcome == _DEGRADED:
            degraded = True
    if failures >= quorum:
        return _DOWN
    if len(outcomes) - failures > regions - quorum:
        return _DEGRADED if degraded else _UP
    return None
