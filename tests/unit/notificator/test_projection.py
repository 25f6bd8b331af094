"""The batch projection's row values: what `flush` compares and writes."""

from __future__ import annotations

import uuid
from dataclasses import astuple, fields
from datetime import UTC, datetime

from pingtower.notificator.store.projection import (
    DEFINED,
    ProjectedMonitor,
    new_monitor,
    placeholder,
)

AT = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def definition(**changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "tenant": "acme",
        "name": "api",
        "type": "http",
        "target": "https://api.example.com/",
        "tags": ["web"],
        "parent_id": uuid.uuid4(),
        "updated_at": AT,
    }
    return values | changes


def test_columns_are_every_field_in_declaration_order() -> None:
    row = new_monitor(uuid.uuid4(), definition())
    row.status_changed_at = AT
    row.recent_changes = [AT.isoformat()]
    assert row.columns() == astuple(row)
    assert len(row.columns()) == len(fields(ProjectedMonitor))


def test_a_creation_makes_an_unknown_monitor_with_its_definition() -> None:
    monitor_id = uuid.uuid4()
    values = definition()
    row = new_monitor(monitor_id, values)
    assert row.monitor_id == monitor_id
    assert {column: getattr(row, column) for column in DEFINED} == values
    assert (row.status, row.status_changed_at, row.recent_changes) == ("unknown", None, [])


def test_defining_a_placeholder_sets_the_definition_and_keeps_the_status() -> None:
    row = placeholder(uuid.uuid4(), "acme", AT)
    row.status, row.status_changed_at = "down", AT
    values = definition(name="filled")
    row.define(values)
    assert {column: getattr(row, column) for column in DEFINED} == values
    assert (row.status, row.status_changed_at) == ("down", AT)
