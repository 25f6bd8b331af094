"""Monitors as code, the pure part: read a monitors document, diff it against the workspace's
monitors, and write the workspace back out as a document.

The document is `{"monitors": [entry, ...]}`. An entry has the API's monitor fields, except that
a parent is named (`parent: Name`) rather than given by id, so that a file can be applied to
another workspace. Monitors are matched by name; names are not unique in the API, so an entry may
carry the monitor's `id` to pick one, and an ambiguous name is an error rather than a guess.

Fields left out of an entry are not managed: the workspace keeps whatever it has (an export
writes every field, so an exported file pins everything). `settings`, when given, replaces the
settings whole (as the API does), so both sides are compared after filling in the check type's
defaults and masking secrets: the API never shows a secret, and a secret in the file is therefore
only sent with an update that something else caused. An exported secret reads `<set>`, which
the API keeps as stored; a file may also write `${NAME}` to take a value from the environment.

`slo: {objective: 0.999, window_days: 30}` gives the monitor a service level objective (a
fraction, as the Statistics SLO API takes it; the window defaults to 30 days), which the
Statistics service keeps as one of the workspace's SLOs; `slo: null` removes it, and an entry
without `slo` leaves it as it is. Like `settings` it is replaced whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from pingtower.common.events import SloSetting
from pingtower.pinger.domain.monitor import EDITABLE_FIELDS
from pingtower.pinger.domain.secrets import mask_secrets

# Fields an entry may manage, in the order an export writes them: the monitor's editable fields
# (one list, in the domain), with the two differences from the API's made here:
# - a parent is named (`parent: Name`) rather than given by id, so a file applies to another
#   workspace;
# - `public` stays with the API: publishing on the status page is an admin's decision, and a
#   file is applied with whatever editor's token is at hand.
AS_CODE_NAMES = {"parent_id": "parent"}
API_ONLY = frozenset({"public"})
MANAGED = tuple(AS_CODE_NAMES.get(name, name) for name in EDITABLE_FIELDS if name not in API_ONLY)
ENTRY_KEYS = frozenset(MANAGED) | {"id"}

# (type, target, settings) -> (target, settings) with the check type's defaults filled in; it
# returns its input unchanged when the entry is invalid (the API then says what is wrong).
Normaliser = Callable[[str, str, dict[str, Any]], tuple[str, dict[str, Any]]]


def _unchanged(_type: str, target: str, settings: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return target, settings


class PlanError(ValueError):
    """The document cannot be applied as it is; `problems` lists every reason."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


_ENV_REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def substitute_env(entries: list[dict[str, Any]], env: Mapping[str, str]) -> list[dict[str, Any]]:
    """Entries with every string value that is exactly `${NAME}` replaced by that environment
    variable, so that a file kept in version control need not hold secrets."""
    missing: list[str] = []

    def walk(value: Any, where: str) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, str) and (match := _ENV_REFERENCE.match(value)):
            if match.group(1) in env:
                return env[match.group(1)]
            missing.append(f"{where}: environment variable {match.group(1)} is not set")
        return value

    out = [walk(entry, f"{entry['name']!r}") for entry in entries]
    if missing:
        raise PlanError(missing)
    return out


def parse_document(data: object) -> list[dict[str, Any]]:
    """The entries of a loaded YAML document, checked for shape (the API checks the values)."""
    if data is None:
        return []
    if not isinstance(data, dict) or set(data) - {"monitors"}:
        raise PlanError(["the document must be a mapping with one key, `monitors`"])
    entries = data.get("monitors") or []
    if not isinstance(entries, list):
        raise PlanError(["`monitors` must be a list"])
    problems: list[str] = []
    names_without_id: dict[str, int] = {}
    for index, entry in enumerate(entries):
        where = f"monitors[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a mapping of monitor fields")
            continue
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            problems.append(f"{where}: needs a `name`")
            continue
        where = f"{where} ({name!r})"
        for key in sorted(set(entry) - ENTRY_KEYS, key=str):
            hint = " (name the parent with `parent`)" if key == "parent_id" else ""
            problems.append(f"{where}: unknown field `{key}`{hint}")
        if "settings" in entry and not isinstance(entry["settings"], dict):
            problems.append(f"{where}: `settings` must be a mapping")
        if "id" not in entry:
            if name in names_without_id:
                problems.append(
                    f"{where}: the name is also used by monitors[{names_without_id[name]}]; "
                    "give each an `id`, or rename one"
                )
            names_without_id[name] = index
    if problems:
        raise PlanError(problems)
    return [dict(entry) for entry in entries]


@dataclass
class Create:
    name: str
    entry: dict[str, Any]


@dataclass
class Update:
    name: str
    monitor_id: str
    entry: dict[str, Any]
    # field -> (current, desired), as compared (settings masked and with defaults).
    changes: dict[str, tuple[Any, Any]]


@dataclass
class Delete:
    name: str
    monitor_id: str


@dataclass
class Plan:
    creates: list[Create] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)
    deletes: list[Delete] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    # Monitors of the workspace that the file does not mention, left alone without --prune.
    unmanaged: list[str] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return bool(self.creates or self.updates or self.deletes)

    def render(self) -> list[str]:
        """The diff, one line per change and per changed field, then a summary."""
        lines: list[str] = []
        for create in self.creates:
            entry = create.entry
            what = " ".join(str(entry[k]) for k in ("type", "target") if entry.get(k))
            lines.append(f"+ create {create.name!r}" + (f" ({what})" if what else ""))
        for update in self.updates:
            lines.append(f"~ update {update.name!r}")
            for name, (before, after) in update.changes.items():
                for path, old, new in _field_diff(name, before, after):
                    lines.append(f"    {path}: {_show(old)} -> {_show(new)}")
        for delete in self.deletes:
            lines.append(f"- delete {delete.name!r}")
        summary = (
            f"{len(self.creates)} to create, {len(self.updates)} to update, "
            f"{len(self.deletes)} to delete, {len(self.unchanged)} unchanged"
        )
        if self.unmanaged:
            summary += f"; {len(self.unmanaged)} not in the file left alone (--prune deletes them)"
        lines.append(summary + ".")
        return lines


_MISSING = object()


def _field_diff(path: str, before: Any, after: Any) -> list[tuple[str, Any, Any]]:
    """The leaves that differ, so that a settings change shows the one key that changed."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[tuple[str, Any, Any]] = []
        for key in [*before, *(k for k in after if k not in before)]:
            old, new = before.get(key, _MISSING), after.get(key, _MISSING)
            if old != new:
                out.extend(_field_diff(f"{path}.{key}", old, new))
        return out
    return [(path, before, after)]


def _show(value: Any) -> str:
    if value is _MISSING:
        return "(absent)"
    return json.dumps(value, sort_keys=True, default=str)


def compute_plan(
    entries: Sequence[dict[str, Any]],
    current: Sequence[Mapping[str, Any]],
    *,
    prune: bool = False,
    normalise: Normaliser = _unchanged,
) -> Plan:
    """What to create, update and delete so that the workspace matches the entries.

    `current` holds the monitors as the API shows them (with `id` and `parent_id`).
    """
    by_id = {str(m["id"]): m for m in current}
    by_name: dict[str, list[Mapping[str, Any]]] = {}
    for monitor in current:
        by_name.setdefault(monitor["name"], []).append(monitor)
    names_by_id = {monitor_id: m["name"] for monitor_id, m in by_id.items()}

    problems: list[str] = []
    matched: dict[str, str] = {}  # monitor id -> the entry's name that claimed it
    pairs: list[tuple[dict[str, Any], Mapping[str, Any] | None]] = []
    for entry in entries:
        name = entry["name"]
        found: Mapping[str, Any] | None = None
        if "id" in entry:
            found = by_id.get(str(entry["id"]))
            if found is None:
                problems.append(f"{name!r}: no monitor with id {entry['id']} in this workspace")
                continue
        else:
            candidates = by_name.get(name, [])
            if len(candidates) > 1:
                ids = ", ".join(str(m["id"]) for m in candidates)
                problems.append(
                    f"{name!r}: {len(candidates)} monitors of the workspace have this name "
                    f"({ids}); give the entry an `id` to pick one"
                )
                continue
            found = candidates[0] if candidates else None
        if found is not None:
            monitor_id = str(found["id"])
            if monitor_id in matched:
                problems.append(
                    f"{name!r}: monitor {monitor_id} is already matched by {matched[monitor_id]!r}"
                )
                continue
            matched[monitor_id] = name
        pairs.append((entry, found))

    unmatched = [m for m in current if str(m["id"]) not in matched]
    # Names a `parent` may use: the file's monitors, and the workspace's that stay.
    parent_names = {entry["name"] for entry in entries}
    if not prune:
        parent_names |= {m["name"] for m in unmatched}
    for entry in entries:
        parent = entry.get("parent")
        if parent is not None and parent not in parent_names:
            problems.append(f"{entry['name']!r}: parent {parent!r} is not a monitor of the file")
    if problems:
        raise PlanError(problems)

    plan = Plan()
    for entry, found in pairs:
        if found is None:
            plan.creates.append(Create(entry["name"], entry))
            continue
        changes = _changes(entry, found, names_by_id, normalise)
        if changes:
            plan.updates.append(Update(entry["name"], str(found["id"]), entry, changes))
        else:
            plan.unchanged.append(entry["name"])
    for monitor in unmatched:
        if prune:
            plan.deletes.append(Delete(monitor["name"], str(monitor["id"])))
        else:
            plan.unmanaged.append(monitor["name"])
    return plan


def _changes(
    entry: Mapping[str, Any],
    monitor: Mapping[str, Any],
    names_by_id: Mapping[str, str],
    normalise: Normaliser,
) -> dict[str, tuple[Any, Any]]:
    desired = _comparable(entry, monitor, normalise)
    parent_id = monitor.get("parent_id")
    have = {**monitor, "parent": names_by_id.get(str(parent_id)) if parent_id else None}
    have["tags"] = sorted(have.get("tags") or [])
    return {
        name: (have.get(name), value)
        for name, value in desired.items()
        if name != "id" and have.get(name) != value
    }


def _comparable(
    entry: Mapping[str, Any], monitor: Mapping[str, Any], normalise: Normaliser
) -> dict[str, Any]:
    """The entry's values in the shape the API shows them."""
    out = dict(entry)
    if "settings" in out:
        type_ = str(out.get("type", monitor["type"]))
        target = str(out.get("target", monitor["target"]))
        normal_target, settings = normalise(type_, target, dict(out["settings"]))
        out["settings"] = mask_secrets(settings)
        if "target" in out:
            out["target"] = normal_target
    if isinstance(out.get("tags"), list):
        out["tags"] = sorted({str(tag).strip() for tag in out["tags"]})
    if isinstance(out.get("regions"), list):
        out["regions"] = list(dict.fromkeys(out["regions"]))
    if isinstance(out.get("timeout_seconds"), int):
        out["timeout_seconds"] = float(out["timeout_seconds"])
    if isinstance(out.get("slo"), dict):
        # With the window's default filled in, as the API shows it; an invalid one is left as
        # written, for the API to reject naming the field.
        with suppress(ValidationError):
            out["slo"] = SloSetting.model_validate(out["slo"]).model_dump()
    return out


def create_body(entry: Mapping[str, Any], parent_ids: Mapping[str, str]) -> dict[str, Any]:
    """The POST body of an entry; its parent's name becomes the parent's id."""
    body = {k: v for k, v in entry.items() if k not in ("id", "parent")}
    if entry.get("parent") is not None:
        body["parent_id"] = parent_ids[entry["parent"]]
    return body


def update_body(update: Update, parent_ids: Mapping[str, str]) -> dict[str, Any]:
    """The PATCH body: the changed fields as the file gives them (secrets included, so that a
    file's secret is sent along); `paused` goes through pause/resume instead."""
    body: dict[str, Any] = {}
    for name in update.changes:
        if name == "paused":
            continue
        if name == "parent":
            parent = update.entry.get("parent")
            body["parent_id"] = parent_ids[parent] if parent is not None else None
        else:
            body[name] = update.entry[name]
    return body


def creation_order(creates: Sequence[Create]) -> list[Create]:
    """Parents before their children, so that a child can name a parent created with it; a
    cycle is left in file order (the API then rejects the parent it cannot find)."""
    pending = {create.name: create for create in creates}
    ordered: list[Create] = []
    while pending:
        ready = [c for c in pending.values() if c.entry.get("parent") not in pending]
        if not ready:
            ordered.extend(pending.values())
            break
        for create in ready:
            ordered.append(create)
            del pending[create.name]
    return ordered


def export_document(current: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The workspace's monitors as a document that applies back with no change. An `id` is
    written only where names repeat, since matching by name would be ambiguous."""
    names_by_id = {str(m["id"]): m["name"] for m in current}
    counts: dict[str, int] = {}
    for monitor in current:
        counts[monitor["name"]] = counts.get(monitor["name"], 0) + 1
    entries = []
    for monitor in sorted(current, key=lambda m: (m["name"], str(m["id"]))):
        entry: dict[str, Any] = {}
        if counts[monitor["name"]] > 1:
            entry["id"] = str(monitor["id"])
        for name in MANAGED:
            if name != "parent" and name not in monitor:
                continue  # a server older than this client does not have the field
            if name == "parent":
                parent_id = monitor.get("parent_id")
                if parent_id is not None:
                    entry["parent"] = names_by_id.get(str(parent_id))
            elif name == "target" and monitor["type"] == "heartbeat":
                continue  # heartbeats have no target
            else:
                entry[name] = monitor[name]
        entries.append(entry)
    return {"monitors": entries}
