"""Which monitors a rule selects."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from pingtower.notificator.domain.rules import EventKind, MonitorView, Rule

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
