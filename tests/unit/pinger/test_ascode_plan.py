"""Monitors as code: the diff between a monitors file and the workspace, and the export."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pingtower.pinger.ascode.plan import (
    Create,
    PlanError,
    compute_plan,
    create_body,
    creation_order,
    export_document,
    parse_document,
    substitute_env,
    update_body,
)


def monitor(name: str, monitor_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """A monitor as the API shows it."""
    return {
        "id": monitor_id or f"id-{name}",
        "name": name,
        "type": "http",
        "target": f"https://{name.lower()}.example/",
        "settings": {"method": "GET", "bearer_token": None},
        "tags": [],
        "interval_seconds": 60,
        "cron": None,
        "timezone": "UTC",
        "timeout_seconds": 10.0,
        "regions": ["default"],
        "failures_before_down": 2,
        "successes_before_up": 1,
        "retry_interval_seconds": 20,
        "failure_quorum": None,
        "parent_id": None,
        "paused": False,
        "status": "up",
        **fields,
    }


def test_a_monitor_missing_from_the_workspace_is_created() -> None:
    plan = compute_plan([{"name": "Api", "target": "https://api.example/"}], [])
    assert [c.name for c in plan.creates] == ["Api"]
    assert plan.render()[0] == "+ create 'Api' (https://api.example/)"


def test_an_identical_monitor_is_unchanged() -> None:
    plan = compute_plan([{"name": "Api", "interval_seconds": 60}], [monitor("Api")])
    assert plan.unchanged == ["Api"]
    assert not plan.has_changes


def test_a_changed_field_is_an_update_listing_old_and_new() -> None:
    plan = compute_plan([{"name": "Api", "interval_seconds": 30}], [monitor("Api")])
    assert [(u.name, u.changes) for u in plan.updates] == [("Api", {"interval_seconds": (60, 30)})]
    assert "    interval_seconds: 60 -> 30" in plan.render()


def test_a_settings_change_shows_only_the_key_that_changed() -> None:
    entry = {"name": "Api", "settings": {"method": "HEAD", "bearer_token": None}}
    plan = compute_plan([entry], [monitor("Api")])
    assert '    settings.method: "GET" -> "HEAD"' in plan.render()


def test_fields_left_out_of_the_file_are_not_managed() -> None:
    plan = compute_plan([{"name": "Api"}], [monitor("Api", interval_seconds=300)])
    assert plan.unchanged == ["Api"]


def test_settings_are_compared_after_the_check_type_fills_in_its_defaults() -> None:
    def with_defaults(_t: str, target: str, s: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return target, {"method": "GET", "bearer_token": None, **s}

    plan = compute_plan(
        [{"name": "Api", "settings": {}}], [monitor("Api")], normalise=with_defaults
    )
    assert plan.unchanged == ["Api"]


def test_a_secret_in_the_file_matches_the_masked_secret_of_the_workspace() -> None:
    stored = monitor("Api", settings={"method": "GET", "bearer_token": "<set>"})
    entry = {"name": "Api", "settings": {"method": "GET", "bearer_token": "real-token"}}
    assert compute_plan([entry], [stored]).unchanged == ["Api"]
    removed = {"name": "Api", "settings": {"method": "GET", "bearer_token": None}}
    assert compute_plan([removed], [stored]).updates[0].changes == {
        "settings": ({"method": "GET", "bearer_token": "<set>"}, removed["settings"])
    }


def test_tags_compare_as_a_set() -> None:
    plan = compute_plan(
        [{"name": "Api", "tags": ["b", "a", "b"]}], [monitor("Api", tags=["a", "b"])]
    )
    assert plan.unchanged == ["Api"]


def test_monitors_not_in_the_file_are_left_alone_unless_pruned() -> None:
    current = [monitor("Api"), monitor("Old")]
    kept = compute_plan([{"name": "Api"}], current)
    assert kept.deletes == []
    assert kept.unmanaged == ["Old"]
    assert "1 not in the file left alone" in kept.render()[-1]
    pruned = compute_plan([{"name": "Api"}], current, prune=True)
    assert [(d.name, d.monitor_id) for d in pruned.deletes] == [("Old", "id-Old")]
    assert "- delete 'Old'" in pruned.render()


def test_an_ambiguous_name_in_the_workspace_is_an_error_unless_the_entry_gives_an_id() -> None:
    current = [monitor("Api", "one"), monitor("Api", "two")]
    with pytest.raises(PlanError, match="2 monitors of the workspace have this name"):
        compute_plan([{"name": "Api"}], current)
    plan = compute_plan([{"name": "Api", "id": "two", "interval_seconds": 30}], current)
    assert plan.updates[0].monitor_id == "two"
    assert plan.unmanaged == ["Api"]


def test_an_id_renames_the_monitor_it_names() -> None:
    plan = compute_plan([{"id": "id-Api", "name": "Public API"}], [monitor("Api")])
    assert plan.updates[0].changes == {"name": ("Api", "Public API")}


def test_an_unknown_id_is_an_error() -> None:
    with pytest.raises(PlanError, match="no monitor with id nope"):
        compute_plan([{"name": "Api", "id": "nope"}], [])


def test_a_file_that_repeats_a_name_without_ids_is_rejected() -> None:
    with pytest.raises(PlanError, match="also used by monitors\\[0\\]"):
        parse_document({"monitors": [{"name": "Api"}, {"name": "Api"}]})


def test_the_document_shape_is_checked_naming_the_entry() -> None:
    with pytest.raises(PlanError) as error:
        parse_document({"monitors": [{"name": "Api", "parent_id": "x", "colour": 1}, {}]})
    assert error.value.problems == [
        "monitors[0] ('Api'): unknown field `colour`",
        "monitors[0] ('Api'): unknown field `parent_id` (name the parent with `parent`)",
        "monitors[1]: needs a `name`",
    ]
    with pytest.raises(PlanError):
        parse_document(["Api"])
    assert parse_document(None) == []


def test_a_parent_is_named_and_must_exist() -> None:
    with pytest.raises(PlanError, match="parent 'Nope'"):
        compute_plan([{"name": "Api", "parent": "Nope"}], [])
    current = [monitor("Router"), monitor("Api", parent_id="id-Router")]
    assert compute_plan([{"name": "Api", "parent": "Router"}], current).unchanged == ["Api"]
    with pytest.raises(PlanError):  # pruning would delete the parent
        compute_plan([{"name": "Api", "parent": "Router"}], current, prune=True)


def test_children_are_created_after_the_parents_they_name() -> None:
    creates = [
        Create("Leaf", {"name": "Leaf", "parent": "Mid"}),
        Create("Mid", {"name": "Mid", "parent": "Root"}),
        Create("Root", {"name": "Root"}),
    ]
    assert [c.name for c in creation_order(creates)] == ["Root", "Mid", "Leaf"]


def test_request_bodies_carry_the_parent_id_and_leave_paused_to_pause_and_resume() -> None:
    entry = {"name": "Api", "parent": "Router", "paused": True, "interval_seconds": 30}
    assert create_body(entry, {"Router": "r1"}) == {
        "name": "Api",
        "parent_id": "r1",
        "paused": True,
        "interval_seconds": 30,
    }
    update = compute_plan([entry], [monitor("Router"), monitor("Api")]).updates[0]
    assert set(update.changes) == {"parent", "paused", "interval_seconds"}
    assert update_body(update, {"Router": "r1"}) == {"parent_id": "r1", "interval_seconds": 30}


def test_an_export_names_parents_and_gives_ids_only_where_names_repeat() -> None:
    current = [
        monitor("Router"),
        monitor("Api", parent_id="id-Router"),
        monitor("Twin", "t1"),
        monitor("Twin", "t2"),
    ]
    entries = export_document(current)["monitors"]
    assert [(e["name"], e.get("id"), e.get("parent")) for e in entries] == [
        ("Api", None, "Router"),
        ("Router", None, None),
        ("Twin", "t1", None),
        ("Twin", "t2", None),
    ]
    assert "status" not in entries[0]


names = st.lists(
    st.text(alphabet="abcdef", min_size=1, max_size=4), unique=True, min_size=0, max_size=8
)


@given(names, st.data())
def test_an_export_applies_back_with_no_change(names: list[str], data: st.DataObject) -> None:
    current = [
        monitor(
            name,
            interval_seconds=data.draw(st.sampled_from([30, 60, 300])),
            tags=sorted(data.draw(st.sets(st.sampled_from(["prod", "web"])))),
            paused=data.draw(st.booleans()),
        )
        for name in names
    ]
    entries = parse_document(export_document(current))
    plan = compute_plan(entries, current, prune=True)
    assert not plan.has_changes
    assert sorted(plan.unchanged) == sorted(names)


def test_env_references_are_substituted_so_files_need_not_hold_secrets() -> None:
    entries = [{"name": "Api", "settings": {"bearer_token": "${API_TOKEN}", "note": "x${Y}"}}]
    assert substitute_env(entries, {"API_TOKEN": "t0ken"}) == [
        {"name": "Api", "settings": {"bearer_token": "t0ken", "note": "x${Y}"}}
    ]
    with pytest.raises(
        PlanError, match=r"'Api'\.settings\.bearer_token: environment variable API_TOKEN is not set"
    ):
        substitute_env(entries, {})
