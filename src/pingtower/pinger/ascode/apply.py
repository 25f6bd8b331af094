"""Carry out a plan through the API, monitor by monitor, and read/write the YAML files."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from pingtower.pinger.ascode.client import ApiError, MonitorsApi
from pingtower.pinger.ascode.plan import (
    Plan,
    Update,
    create_body,
    creation_order,
    export_document,
    parse_document,
    substitute_env,
    update_body,
)
from pingtower.pinger.domain.monitor import InvalidSettingError


def normalise(type_: str, target: str, settings: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The check type's own normalisation (defaults filled in), as the API stores it; an invalid
    entry is left as written, for the API to reject with the field that is wrong."""
    # Imported here: the check modules pull in aiohttp, which the other commands do not need.
    from pingtower.pinger.checks.base import get_check

    try:
        return get_check(type_).validate(target, settings)
    except InvalidSettingError:
        return target, settings


def load_entries(text: str) -> list[dict[str, Any]]:
    return substitute_env(parse_document(yaml.safe_load(text)), os.environ)


def dump_document(monitors: list[dict[str, Any]]) -> str:
    return yaml.safe_dump(
        export_document(monitors), sort_keys=False, allow_unicode=True, default_flow_style=False
    )


@dataclass
class Outcome:
    done: list[str] = field(default_factory=list)
    # monitor name -> the API's reasons, one per field
    failed: dict[str, list[str]] = field(default_factory=dict)


def apply_plan(plan: Plan, api: MonitorsApi, current: list[dict[str, Any]]) -> Outcome:
    """Deletes (children before their parents), then updates, then creates (parents before
    their children): deleting first frees the slots a workspace at its monitor quota needs to
    swap monitors in one apply. An update that names a parent this apply creates waits for the
    creates. A monitor the API refuses is reported with its fields and the others go on."""
    outcome = Outcome()
    parent_ids = {m["name"]: str(m["id"]) for m in current}
    parent_ids.update({u.name: u.monitor_id for u in plan.updates})

    def attempt(label: str, name: str, action: Callable[[], None]) -> None:
        try:
            action()
        except ApiError as error:
            outcome.failed[name] = error.lines()
        except KeyError as missing:  # a parent that could not be created
            outcome.failed[name] = [f"parent: {missing.args[0]!r} was not created"]
        else:
            outcome.done.append(f"{label} {name!r}")

    parent_of = {str(m["id"]): str(m["parent_id"]) for m in current if m.get("parent_id")}

    def depth(monitor_id: str) -> int:
        """Its ancestors in the workspace as it is (a cycle counted once round)."""
        seen = {monitor_id}
        while (monitor_id := parent_of.get(monitor_id, "")) and monitor_id not in seen:
            seen.add(monitor_id)
        return len(seen) - 1

    def updater(update: Update) -> Callable[[], None]:
        def do_update() -> None:
            body = update_body(update, parent_ids)
            if body:
                api.update(update.monitor_id, body)
            if "paused" in update.changes:
                api.set_paused(update.monitor_id, bool(update.entry["paused"]))

        return do_update

    # Deepest first, so that a child goes before its parent; file order otherwise (stable).
    for delete in sorted(plan.deletes, key=lambda delete: -depth(delete.monitor_id)):

        def do_delete(monitor_id: str = delete.monitor_id) -> None:
            api.delete(monitor_id)

        attempt("deleted", delete.name, do_delete)
    created_names = {create.name for create in plan.creates}
    after_creates = [u for u in plan.updates if u.entry.get("parent") in created_names]
    for update in (u for u in plan.updates if u.entry.get("parent") not in created_names):
        attempt("updated", update.name, updater(update))
    for create in creation_order(plan.creates):

        def do_create(entry: dict[str, Any] = create.entry) -> None:
            created = api.create(create_body(entry, parent_ids))
            parent_ids[entry["name"]] = str(created["id"])

        attempt("created", create.name, do_create)
    for update in after_creates:
        attempt("updated", update.name, updater(update))
    return outcome
