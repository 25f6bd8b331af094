"""Which monitors a rule selects."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from pingtower.notificator.domain.rules import EventKind, MonitorView, Rule, slo_selects

tags = st.lists(st.sampled_from(["prod", "eu", "us", "db", "web"]), max_size=4).map(tuple)


def rule(**fields: object) -> Rule:
    values: dict[str, object] = {
        "rule_id": uuid.uuid4(),
        "tenant": "acme",
        "name": "r",
        "events": frozenset({EventKind.DOWN}),
        "channel_ids": (uuid.uuid4(),),
    }
    values.update(fields)
    return Rule(**values)  # type: ignore[arg-type]


def monitor(tenant: str = "acme", tags: tuple[str, ...] = ()) -> MonitorView:
    return MonitorView(uuid.uuid4(), tenant, "m", tags=tags)


@given(tags)
def test_a_rule_without_ids_or_tags_matches_every_monitor_of_its_workspace(
    monitor_tags: tuple[str, ...],
) -> None:
    assert rule().matches(monitor(tags=monitor_tags))


@given(tags, st.frozensets(st.sampled_from(["prod", "eu", "db"])))
def test_a_rule_never_matches_another_workspaces_monitor(
    monitor_tags: tuple[str, ...], rule_tags: frozenset[str]
) -> None:
    assert not rule(tags=rule_tags).matches(monitor("globex", monitor_tags))


@given(tags, st.frozensets(st.sampled_from(["prod", "eu", "db"]), min_size=1))
def test_a_tag_rule_matches_exactly_the_monitors_sharing_a_tag(
    monitor_tags: tuple[str, ...], rule_tags: frozenset[str]
) -> None:
    assert rule(tags=rule_tags).matches(monitor(tags=monitor_tags)) == bool(
        rule_tags & set(monitor_tags)
    )


def test_an_id_rule_matches_the_listed_monitor_only() -> None:
    chosen, other = monitor(), monitor()
    by_id = rule(monitor_ids=frozenset({chosen.monitor_id}))
    assert by_id.matches(chosen)
    assert not by_id.matches(other)


def test_ids_and_tags_add_up() -> None:
    chosen, tagged, neither = monitor(), monitor(tags=("db",)), monitor(tags=("web",))
    both = rule(monitor_ids=frozenset({chosen.monitor_id}), tags=frozenset({"db"}))
    assert [both.matches(m) for m in (chosen, tagged, neither)] == [True, True, False]


def test_a_disabled_rule_matches_nothing() -> None:
    assert not rule(enabled=False).matches(monitor())


def test_an_slo_rule_for_every_monitor_takes_every_slo_of_its_workspace() -> None:
    every = rule(events=frozenset({EventKind.SLO}))
    assert slo_selects(every, monitor(), None)
    assert slo_selects(every, None, "anything")
    assert not slo_selects(every, monitor(tenant="other"), None)


def test_an_slo_rule_by_tag_takes_slos_of_that_tag_or_of_a_monitor_carrying_it() -> None:
    prod = rule(events=frozenset({EventKind.SLO}), tags=frozenset({"prod"}))
    assert slo_selects(prod, None, "prod")
    assert not slo_selects(prod, None, "staging")
    assert slo_selects(prod, monitor(tags=("prod",)), None)
    assert not slo_selects(prod, monitor(tags=("db",)), None)


def test_a_rule_not_asking_for_slo_events_takes_none() -> None:
    assert not slo_selects(rule(), monitor(), None)
    assert not slo_selects(rule(events=frozenset({EventKind.SLO}), enabled=False), monitor(), None)


def test_only_enabled_latency_or_certificate_rules_want_check_results() -> None:
    assert rule(events=frozenset({EventKind.LATENCY})).wants_check_results
    assert rule(events=frozenset({EventKind.CERT_EXPIRING})).wants_check_results
    assert not rule(events=frozenset({EventKind.DOWN, EventKind.SLO})).wants_check_results
    assert not rule(events=frozenset({EventKind.LATENCY}), enabled=False).wants_check_results
