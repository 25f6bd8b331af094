"""The status machine, as examples and as properties over arbitrary result sequences."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pingtower.common.events import Outcome, Status
from pingtower.pinger.domain.status import (
    Confirmation,
    Decision,
    MonitorState,
    Observation,
    OpenIncident,
    apply_result,
    counted_only,
    judge_result,
    majority,
    pause,
    resume,
    round_verdict,
    single_region_verdict,
)

T0 = datetime(2026, 11, 29, tzinfo=UTC)


def run(
    outcomes: list[Outcome],
    confirmation: Confirmation = Confirmation(),
    state: MonitorState | None = None,
) -> list[Decision]:
    state = state or MonitorState()
    decisions = []
    for i, outcome in enumerate(outcomes):
        observation = Observation(
            outcome,
            T0 + timedelta(seconds=i),
            error_kind="connect" if outcome == Outcome.DOWN else None,
        )
        decision = apply_result(state, observation, confirmation, incident_id=uuid.uuid4())
        decisions.append(decision)
        state = decision.state
    return decisions


UP, DEG, DOWN = Outcome.UP, Outcome.DEGRADED, Outcome.DOWN


def test_monitor_is_unknown_before_its_first_result() -> None:
    assert MonitorState().status == Status.UNKNOWN


def test_first_success_makes_an_unknown_monitor_up() -> None:
    (decision,) = run([UP])
    assert decision.state.status == Status.UP
    assert decision.transition is not None
    assert decision.transition.previous == Status.UNKNOWN


def test_monitor_goes_down_after_two_failed_checks() -> None:
    first, second = run([UP, DOWN, DOWN])[1:]
    assert first.state.status == Status.PENDING
    assert first.opened is None
    assert second.state.status == Status.DOWN
    assert second.opened is not None
    assert second.opened.cause == "connect"


def test_one_failure_between_successes_never_opens_an_incident() -> None:
    decisions = run([UP, DOWN, UP, DOWN, UP])
    assert [d.state.status for d in decisions] == [
        Status.UP,
        Status.PENDING,
        Status.UP,
        Status.PENDING,
        Status.UP,
    ]
    assert all(d.opened is None for d in decisions)


def test_recovery_needs_m_successes_and_resolves_the_incident() -> None:
    decisions = run([DOWN, DOWN, UP, UP], Confirmation(2, 2))
    opened = decisions[1].opened
    assert decisions[2].state.status == Status.DOWN
    assert decisions[2].resolved is None
    assert decisions[3].state.status == Status.UP
    assert decisions[3].resolved == opened


def test_a_degraded_check_makes_the_monitor_degraded() -> None:
    decisions = run([UP, DEG, UP])
    assert [d.state.status for d in decisions] == [Status.UP, Status.DEGRADED, Status.UP]


def test_staying_down_opens_no_second_incident() -> None:
    decisions = run([DOWN] * 5)
    assert sum(d.opened is not None for d in decisions) == 1
    assert decisions[-1].transition is None


def test_a_paused_monitor_ignores_results() -> None:
    paused = pause(run([UP])[-1].state, T0).state
    assert paused.status == Status.PAUSED
    (decision,) = run([DOWN, DOWN], state=paused)[:1]
    assert decision.state == paused
    assert decision.transition is None


def test_resuming_keeps_an_open_outage_down() -> None:
    down = run([DOWN, DOWN])[-1].state
    resumed = resume(pause(down, T0).state, T0).state
    assert resumed.status == Status.DOWN
    assert resumed.incident == down.incident
    recovered = run([UP], state=resumed)[0]
    assert recovered.resolved == down.incident


def test_resuming_a_healthy_monitor_makes_it_unknown() -> None:
    resumed = resume(pause(run([UP])[-1].state, T0).state, T0)
    assert resumed.state.status == Status.UNKNOWN


def test_a_check_that_ran_while_paused_is_dated_no_earlier_than_the_resume() -> None:
    up = run([UP])[-1].state
    paused = pause(up, T0 + timedelta(seconds=10)).state
    resumed_at = T0 + timedelta(seconds=12)
    resumed = resume(paused, resumed_at).state
    during_pause = Observation(UP, T0 + timedelta(seconds=11))
    late = apply_result(resumed, during_pause, Confirmation(), incident_id=uuid.uuid4())
    assert late.transition is not None
    assert (late.state.status, late.transition.at, late.state.since) == (
        Status.UP,
        resumed_at,
        resumed_at,
    )


def test_confirmation_counts_must_be_positive() -> None:
    try:
        Confirmation(0, 1)
    except ValueError:
        return
    raise AssertionError("Confirmation(0, 1) was accepted")


# --- properties -----------------------------------------------------------------------------

outcomes = st.lists(st.sampled_from([UP, DEG, DOWN]), max_size=60)
confirmations = st.builds(
    Confirmation, st.integers(min_value=1, max_value=5), st.integers(min_value=1, max_value=5)
)


def longest_failure_run_before(seq: list[Outcome], index: int) -> int:
    count = 0
    for outcome in reversed(seq[: index + 1]):
        if outcome != DOWN:
            break
        count += 1
    return count


@given(outcomes, confirmations)
def test_no_down_without_n_consecutive_failures(seq: list[Outcome], conf: Confirmation) -> None:
    for i, decision in enumerate(run(seq, conf)):
        if decision.transition is not None and decision.transition.current == Status.DOWN:
            assert longest_failure_run_before(seq, i) >= conf.failures_before_down


@given(outcomes, confirmations)
def test_a_run_of_n_failures_always_ends_down(seq: list[Outcome], conf: Confirmation) -> None:
    full = seq + [DOWN] * conf.failures_before_down
    assert run(full, conf)[-1].state.status == Status.DOWN


@given(st.integers(min_value=1, max_value=40), st.booleans(), st.integers(2, 5))
def test_alternating_single_results_never_flap_down(length: int, start_up: bool, n: int) -> None:
    seq = [(UP if (i % 2 == 0) == start_up else DOWN) for i in range(length)]
    decisions = run(seq, Confirmation(n, 1))
    assert all(d.state.status != Status.DOWN for d in decisions)
    assert all(d.opened is None for d in decisions)


@given(outcomes, confirmations)
def test_incidents_open_on_down_entry_and_close_on_recovery(
    seq: list[Outcome], conf: Confirmation
) -> None:
    open_incident = None
    for decision in run(seq, conf):
        t = decision.transition
        entered_down = t is not None and t.current == Status.DOWN
        left_down = t is not None and t.previous == Status.DOWN
        assert (decision.opened is not None) == entered_down
        assert (decision.resolved is not None) == left_down
        if decision.opened is not None:
            assert open_incident is None
            open_incident = decision.opened
        if decision.resolved is not None:
            assert decision.resolved == open_incident
            open_incident = None
        assert decision.state.incident == open_incident
        assert (open_incident is not None) == (decision.state.status == Status.DOWN)


@given(outcomes, confirmations)
def test_every_transition_changes_the_status(seq: list[Outcome], conf: Confirmation) -> None:
    previous = Status.UNKNOWN
    for decision in run(seq, conf):
        if decision.transition is not None:
            assert decision.transition.previous == previous != decision.transition.current
        previous = decision.state.status


# --- the fast path: `apply_result` is `judge_result` ---------------------------------------

any_states = st.builds(
    MonitorState,
    st.sampled_from(list(Status)),
    st.one_of(st.none(), st.integers(0, 30).map(lambda s: T0 + timedelta(seconds=s))),
    st.integers(0, 6),
    st.integers(0, 6),
    st.one_of(
        st.none(),
        st.builds(OpenIncident, st.uuids(), st.just(T0), st.sampled_from([None, "connect"])),
    ),
)
steps = st.lists(
    st.tuples(st.sampled_from([UP, DEG, DOWN]), st.booleans(), st.integers(0, 40)), max_size=40
)


@given(any_states, steps, confirmations)
def test_the_fast_path_decides_as_the_full_rules(
    start: MonitorState, seq: list[tuple[Outcome, bool, int]], conf: Confirmation
) -> None:
    """From any state (consistent or not), result by result, inside maintenance windows or
    not: the same decision, state, transition and incidents."""
    state = start
    for outcome, maintenance, second in seq:
        observation = Observation(
            outcome, T0 + timedelta(seconds=second), error_kind="connect", error_message="x"
        )
        incident_id = uuid.uuid4()
        fast = apply_result(
            state, observation, conf, incident_id=incident_id, in_maintenance=maintenance
        )
        full = judge_result(
            state, observation, conf, incident_id=incident_id, in_maintenance=maintenance
        )
        assert fast == full
        state = full.state


@given(any_states)
def test_counted_only_takes_exactly_the_results_that_change_only_the_counts(
    state: MonitorState,
) -> None:
    for outcome, failures, successes in itertools.product(
        [UP, DEG, DOWN], range(1, 8), range(1, 8)
    ):
        conf = Confirmation(failures, successes)
        full = judge_result(state, Observation(outcome, T0), conf, incident_id=uuid.uuid4())
        quiet = full.transition is None and full.opened is None and full.resolved is None
        counted = counted_only(state, outcome, conf)
        if counted is not None:
            assert quiet
            assert counted == full.state
            assert (counted.status, counted.since, counted.incident) == (
                state.status,
                state.since,
                state.incident,
            )
        else:
            # Every quiet result but a paused monitor's takes the fast path.
            assert not quiet or state.status == Status.PAUSED


def test_states_and_decisions_are_frozen_values() -> None:
    state = MonitorState(Status.UP, T0, 0, 3)
    assert state == MonitorState(status=Status.UP, since=T0, consecutive_successes=3)
    assert hash(state) == hash(MonitorState(Status.UP, T0, 0, 3))
    assert Decision(state) == Decision(state, None, None, None)
    try:
        state.status = Status.DOWN  # type: ignore[misc]
    except AttributeError:
        return
    raise AssertionError("a MonitorState was changed in place")


# --- several regions ------------------------------------------------------------------------

region_outcomes = st.lists(st.sampled_from([UP, DEG, DOWN]), min_size=1, max_size=7)


def test_majority_of_regions() -> None:
    assert [majority(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]


def test_one_regions_verdict_is_what_the_round_of_its_one_outcome_says() -> None:
    for outcome, quorum in itertools.product(Outcome, (0, 1, 2)):
        expected = round_verdict({"eu": outcome}, regions=1, quorum=quorum)
        assert single_region_verdict(outcome) == expected


def test_one_failing_region_of_three_does_not_fail_the_round() -> None:
    outcomes = {"eu": DOWN, "us": UP}
    assert round_verdict(outcomes, regions=3, quorum=2) is None
    assert round_verdict({**outcomes, "ap": UP}, regions=3, quorum=2) == UP
    assert round_verdict({**outcomes, "ap": DOWN}, regions=3, quorum=2) == DOWN


def test_a_round_is_decided_without_waiting_for_a_silent_region() -> None:
    assert round_verdict({"eu": UP, "us": UP}, regions=3, quorum=2) == UP
    assert round_verdict({"eu": DOWN, "us": DOWN}, regions=3, quorum=2) == DOWN


@given(region_outcomes, st.integers(min_value=1, max_value=7))
def test_a_complete_round_fails_exactly_when_k_regions_fail(
    seen: list[Outcome], quorum: int
) -> None:
    outcomes = {f"r{i}": outcome for i, outcome in enumerate(seen)}
    k = min(quorum, len(seen))
    verdict = round_verdict(outcomes, regions=len(seen), quorum=quorum)
    assert verdict is not None
    assert (verdict == DOWN) == (seen.count(DOWN) >= k)


@given(region_outcomes, st.integers(min_value=1, max_value=7), st.randoms())
def test_the_first_verdict_of_a_round_is_its_final_one(
    seen: list[Outcome], quorum: int, rng: Any
) -> None:
    arrivals = list(enumerate(seen))
    rng.shuffle(arrivals)
    final = round_verdict({f"r{i}": o for i, o in arrivals}, regions=len(seen), quorum=quorum)
    outcomes: dict[str, Outcome] = {}
    for i, outcome in arrivals:
        outcomes[f"r{i}"] = outcome
        early = round_verdict(outcomes, regions=len(seen), quorum=quorum)
        if early is not None:
            assert (early == DOWN) == (final == DOWN)
            break


@given(st.sampled_from([UP, DEG, DOWN]))
def test_one_region_decides_alone(outcome: Outcome) -> None:
    assert round_verdict({"default": outcome}, regions=1, quorum=1) == outcome
