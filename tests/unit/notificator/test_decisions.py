"""What a status change decides: alerts opened and resolved, messages queued."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from pingtower.notificator.domain.decisions import (
    DeliveryKind,
    OpenAlert,
    classify,
    decide,
)
from pingtower.notificator.domain.rules import EventKind, MonitorView, Rule

AT = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
MONITOR = MonitorView(uuid.uuid4(), "acme", "api", "https://api.example.com", "http", ("prod",))


def rule(*events: EventKind, channels: int = 1, **fields: object) -> Rule:
    values: dict[str, object] = {
        "rule_id": uuid.uuid4(),
        "tenant": "acme",
        "name": "r",
        "events": frozenset(events),
        "channel_ids": tuple(uuid.uuid4() for _ in range(channels)),
    }
    values.update(fields)
    return Rule(**values)  # type: ignore[arg-type]


def test_statuses_map_to_rule_events() -> None:
    assert classify("down") is EventKind.DOWN
    assert classify("degraded") is EventKind.DEGRADED
    assert classify("up") is EventKind.RECOVERED
    for quiet in ("pending", "unknown", "paused", "maintenance"):
        assert classify(quiet) is None


def test_a_down_opens_one_alert_and_queues_one_message_per_channel() -> None:
    r = rule(EventKind.DOWN, EventKind.RECOVERED, channels=2)
    decision = decide(EventKind.DOWN, MONITOR, [r], {}, AT)
    [opening] = decision.open
    assert opening.rule == r
    assert sorted((d.channel_id, d.kind, d.sequence, d.due_at) for d in decision.deliveries) == (
        sorted((c, DeliveryKind.DOWN, 0, AT) for c in r.channel_ids)
    )
    assert {d.alert_id for d in decision.deliveries} == {opening.alert_id}


def test_a_second_down_while_the_alert_is_open_decides_nothing() -> None:
    r = rule(EventKind.DOWN)
    open_alert = OpenAlert(uuid.uuid4(), r.rule_id, EventKind.DOWN)
    assert decide(EventKind.DOWN, MONITOR, [r], {r.rule_id: open_alert}, AT).empty


def test_the_delay_postpones_the_message_and_reminders_follow_it() -> None:
    r = rule(EventKind.DOWN, delay_seconds=300, reminder_interval_seconds=600, reminder_count=2)
    decision = decide(EventKind.DOWN, MONITOR, [r], {}, AT)
    due = sorted((d.kind.value, d.sequence, d.due_at - AT) for d in decision.deliveries)
    assert due == [
        ("down", 0, timedelta(seconds=300)),
        ("reminder", 1, timedelta(seconds=900)),
        ("reminder", 2, timedelta(seconds=1500)),
    ]


def test_recovery_resolves_and_tells_only_channels_that_heard_of_the_problem() -> None:
    r = rule(EventKind.DOWN, EventKind.RECOVERED, channels=2)
    told, untold = r.channel_ids
    alert = OpenAlert(uuid.uuid4(), r.rule_id, EventKind.DOWN, frozenset({told}))
    decision = decide(EventKind.RECOVERED, MONITOR, [r], {r.rule_id: alert}, AT)
    assert decision.resolve == [alert.alert_id]
    assert [(d.channel_id, d.kind) for d in decision.deliveries] == [(told, DeliveryKind.RECOVERED)]
    assert untold not in {d.channel_id for d in decision.deliveries}


def test_recovery_without_the_recovered_event_resolves_silently() -> None:
    r = rule(EventKind.DOWN)
    alert = OpenAlert(uuid.uuid4(), r.rule_id, EventKind.DOWN, frozenset(r.channel_ids))
    decision = decide(EventKind.RECOVERED, MONITOR, [r], {r.rule_id: alert}, AT)
    assert decision.resolve == [alert.alert_id]
    assert decision.deliveries == []


def test_recovery_with_no_open_alert_decides_nothing() -> None:
    assert decide(EventKind.RECOVERED, MONITOR, [rule(EventKind.RECOVERED)], {}, AT).empty


def test_degraded_then_down_worsens_the_alert_and_sends_the_down() -> None:
    r = rule(EventKind.DEGRADED, EventKind.DOWN)
    alert = OpenAlert(uuid.uuid4(), r.rule_id, EventKind.DEGRADED)
    decision = decide(EventKind.DOWN, MONITOR, [r], {r.rule_id: alert}, AT)
    assert decision.worsen == [alert.alert_id]
    assert [d.kind for d in decision.deliveries] == [DeliveryKind.DOWN]


def test_rules_that_do_not_match_or_do_not_want_the_event_are_ignored() -> None:
    other_tag = rule(EventKind.DOWN, tags=frozenset({"staging"}))
    only_degraded = rule(EventKind.DEGRADED)
    other_tenant = rule(EventKind.DOWN, tenant="globex")
    assert decide(EventKind.DOWN, MONITOR, [other_tag, only_degraded, other_tenant], {}, AT).empty


@given(st.integers(min_value=1, max_value=5), st.integers(min_value=0, max_value=5))
def test_deliveries_are_unique_per_alert_channel_kind_and_sequence(
    channels: int, reminders: int
) -> None:
    r = rule(
        EventKind.DOWN,
        channels=channels,
        reminder_interval_seconds=60 if reminders else 0,
        reminder_count=reminders,
    )
    deliveries = decide(EventKind.DOWN, MONITOR, [r], {}, AT).deliveries
    keys = [(d.alert_id, d.channel_id, d.kind, d.sequence) for d in deliveries]
    assert len(keys) == len(set(keys)) == channels * (1 + reminders)


def test_a_child_whose_parent_is_down_opens_no_alert() -> None:
    assert decide(EventKind.DOWN, MONITOR, [rule(EventKind.DOWN)], {}, AT, parent_down=True).empty


def test_a_silenced_monitor_opens_its_alert_but_queues_nothing() -> None:
    decision = decide(EventKind.DOWN, MONITOR, [rule(EventKind.DOWN)], {}, AT, silenced=True)
    assert len(decision.open) == 1
    assert decision.deliveries == []


def flappy(**fields: object) -> Rule:
    return rule(
        EventKind.DOWN,
        EventKind.RECOVERED,
        flap_threshold=3,
        flap_window_seconds=600,
        **fields,
    )


def changes(count: int, every_seconds: int = 30) -> list[datetime]:
    return [AT - timedelta(seconds=every_seconds * i) for i in reversed(range(count))]


@given(st.integers(min_value=0, max_value=10), st.integers(min_value=1, max_value=400))
def test_flapping_means_more_changes_than_the_threshold_within_the_window(
    count: int, every: int
) -> None:
    from pingtower.notificator.domain.decisions import is_flapping

    recent = changes(count, every)
    inside = sum(1 for t in recent if t > AT - timedelta(seconds=600))
    assert is_flapping(flappy(), recent, AT) == (inside > 3)


def test_a_monitor_that_starts_flapping_gets_one_flapping_notice_instead() -> None:
    r = flappy()
    down = OpenAlert(uuid.uuid4(), r.rule_id, EventKind.DOWN, frozenset(r.channel_ids))
    decision = decide(
        EventKind.RECOVERED, MONITOR, [r], {r.rule_id: down}, AT, recent_changes=changes(4)
    )
    assert decision.resolve == [down.alert_id]
    [opening] = decision.open
    assert opening.problem is None  # a flapping alert
    assert [d.kind for d in decision.deliveries] == [DeliveryKind.FLAPPING]


def test_a_flapping_monitor_swallows_further_changes() -> None:
    r = flappy()
    flapping = OpenAlert(uuid.uuid4(), r.rule_id, None)
    for event in (EventKind.DOWN, EventKind.RECOVERED):
        decision = decide(event, MONITOR, [r], {r.rule_id: flapping}, AT, recent_changes=changes(6))
        assert decision.open == decision.resolve == decision.deliveries == []
        assert decision.quiet_after == {flapping.alert_id: AT + timedelta(seconds=600)}


def test_a_change_after_a_quiet_window_ends_the_flapping_and_notifies_again() -> None:
    r = flappy()
    flapping = OpenAlert(uuid.uuid4(), r.rule_id, None, frozenset(r.channel_ids))
    recent = [*changes(6, every_seconds=10), AT + timedelta(minutes=30)]
    later = AT + timedelta(minutes=30)
    decision = decide(
        EventKind.DOWN, MONITOR, [r], {r.rule_id: flapping}, later, recent_changes=recent
    )
    assert decision.resolve == [flapping.alert_id]
    assert [d.kind for d in decision.deliveries] == [DeliveryKind.DOWN]


def test_an_escalation_is_queued_for_its_channels_after_the_wait() -> None:
    manager = uuid.uuid4()
    r = rule(
        EventKind.DOWN,
        delay_seconds=60,
        escalation_channel_ids=(manager,),
        escalate_after_seconds=900,
    )
    deliveries = decide(EventKind.DOWN, MONITOR, [r], {}, AT).deliveries
    [escalation] = [d for d in deliveries if d.kind is DeliveryKind.ESCALATION]
    assert escalation.channel_id == manager
    assert escalation.due_at == AT + timedelta(seconds=960)


def test_a_rule_asking_only_for_late_heartbeats_hears_of_late_heartbeats_only() -> None:
    late_only = rule(EventKind.HEARTBEAT_LATE, EventKind.RECOVERED)
    heartbeat = MonitorView(uuid.uuid4(), "acme", "nightly backup", "", "heartbeat")
    late = decide(EventKind.DOWN, heartbeat, [late_only], {}, AT, heartbeat_late=True)
    [opening] = late.open
    assert [d.kind for d in late.deliveries] == [DeliveryKind.DOWN]
    assert decide(EventKind.DOWN, heartbeat, [late_only], {}, AT).empty  # failed, not late
    assert decide(EventKind.DOWN, MONITOR, [late_only], {}, AT).empty
    # Its recovery is told like any other.
    open_alert = OpenAlert(opening.alert_id, late_only.rule_id, EventKind.DOWN,
                           frozenset(late_only.channel_ids))  # fmt: skip
    recovered = decide(
        EventKind.RECOVERED, heartbeat, [late_only], {late_only.rule_id: open_alert}, AT
    )
    assert [d.kind for d in recovered.deliveries] == [DeliveryKind.RECOVERED]


def test_a_down_rule_hears_of_late_heartbeats_too() -> None:
    down = rule(EventKind.DOWN)
    heartbeat = MonitorView(uuid.uuid4(), "acme", "nightly backup", "", "heartbeat")
    assert decide(EventKind.DOWN, heartbeat, [down], {}, AT, heartbeat_late=True).open
