"""`pingtower apply` carries out a plan in the order that frees quota first and keeps the
parent links valid: deletes (children first), updates, creates (parents first)."""

from __future__ import annotations

from typing import Any

from pingtower.pinger.ascode.apply import apply_plan
from pingtower.pinger.ascode.client import MonitorsApi
from pingtower.pinger.ascode.plan import Create, Delete, Plan, Update


class RecordingApi(MonitorsApi):
    """The API's monitor calls, recorded in order; created monitors get `new-<name>` ids."""

    def __init__(self) -> None:
        super().__init__("http://api.invalid", token=None)
        self.calls: list[tuple[str, str, dict[str, Any] | None]] = []

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create", body["name"], body))
        return {**body, "id": f"new-{body['name']}"}

    def update(self, monitor_id: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("update", monitor_id, body))
        return {"id": monitor_id, **body}

    def set_paused(self, monitor_id: str, paused: bool) -> None:
        self.calls.append(("pause" if paused else "resume", monitor_id, None))

    def delete(self, monitor_id: str) -> None:
        self.calls.append(("delete", monitor_id, None))


def current(name: str, parent_id: str | None = None) -> dict[str, Any]:
    return {"id": f"id-{name}", "name": name, "parent_id": parent_id}


def test_deletes_go_first_children_before_parents_then_updates_then_creates_parents_first() -> None:
    workspace = [
        current("Old router"),
        current("Old site", parent_id="id-Old router"),
        current("Old page", parent_id="id-Old site"),
        current("Kept"),
    ]
    plan = Plan(
        creates=[
            Create("New site", {"name": "New site", "parent": "New router"}),
            Create("New router", {"name": "New router"}),
        ],
        updates=[
            Update("Kept", "id-Kept", {"name": "Kept", "tags": ["a"]}, {"tags": ([], ["a"])}),
        ],
        # in file order: the parent before its child, which must not be the order of the calls
        deletes=[
            Delete("Old router", "id-Old router"),
            Delete("Old site", "id-Old site"),
            Delete("Old page", "id-Old page"),
        ],
    )
    api = RecordingApi()

    outcome = apply_plan(plan, api, workspace)

    assert outcome.failed == {}
    assert [(kind, subject) for kind, subject, _ in api.calls] == [
        ("delete", "id-Old page"),
        ("delete", "id-Old site"),
        ("delete", "id-Old router"),
        ("update", "id-Kept"),
        ("create", "New router"),
        ("create", "New site"),
    ]
    assert api.calls[-1][2] == {"name": "New site", "parent_id": "new-New router"}


def test_an_update_naming_a_parent_created_by_the_same_apply_runs_after_the_creates() -> None:
    plan = Plan(
        creates=[Create("Router", {"name": "Router"})],
        updates=[
            Update(
                "Site",
                "id-Site",
                {"name": "Site", "parent": "Router", "paused": True},
                {"parent": (None, "Router"), "paused": (False, True)},
            ),
            Update("Other", "id-Other", {"name": "Other", "tags": ["b"]}, {"tags": ([], ["b"])}),
        ],
    )
    api = RecordingApi()

    outcome = apply_plan(plan, api, [current("Site"), current("Other")])

    assert outcome.failed == {}
    assert api.calls == [
        ("update", "id-Other", {"tags": ["b"]}),
        ("create", "Router", {"name": "Router"}),
        ("update", "id-Site", {"parent_id": "new-Router"}),
        ("pause", "id-Site", None),
    ]
    assert outcome.done == ["updated 'Other'", "created 'Router'", "updated 'Site'"]


def test_a_parent_cycle_in_the_workspace_still_deletes_every_monitor() -> None:
    workspace = [current("A", parent_id="id-B"), current("B", parent_id="id-A")]
    plan = Plan(deletes=[Delete("A", "id-A"), Delete("B", "id-B")])
    api = RecordingApi()

    outcome = apply_plan(plan, api, workspace)

    assert sorted(subject for _, subject, _ in api.calls) == ["id-A", "id-B"]
    assert outcome.done == ["deleted 'A'", "deleted 'B'"]
