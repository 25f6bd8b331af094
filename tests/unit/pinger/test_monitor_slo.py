"""A monitor's `slo` setting: its contract, its place among the editable fields, and monitors as
code (diff, request bodies, export round trip)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from pingtower.common.asyncapi import document
from pingtower.common.events import Envelope, MonitorCreated, MonitorUpdated, SloSetting
from pingtower.pinger.api.routes import EDITABLE
from pingtower.pinger.ascode.plan import (
    MANAGED,
    Update,
    compute_plan,
    export_document,
    parse_document,
    update_body,
)
from pingtower.pinger.domain.monitor import EDITABLE_FIELDS
from tests.unit.pinger.test_ascode_plan import monitor


def test_the_api_and_monitors_as_code_edit_the_same_fields_but_for_two_stated_ones() -> None:
    assert EDITABLE == EDITABLE_FIELDS
    assert "slo" in EDITABLE
    assert "slo" in MANAGED
    assert set(EDITABLE) - set(MANAGED) == {"parent_id", "public"}
    assert set(MANAGED) - set(EDITABLE) == {"parent"}
    assert [n for n in MANAGED if n != "parent"] == [
        n for n in EDITABLE if n not in ("parent_id", "public")
    ], "the same order"


def test_a_v1_monitor_event_without_an_slo_still_parses() -> None:
    payload = {
        "monitor_id": "00000000-0000-4000-8000-000000000001",
        "name": "shop",
        "type": "http",
        "target": "https://shop.example/",
        "interval_seconds": 60,
    }
    event = Envelope(type="monitor.updated", producer="pinger", tenant="acme", payload=payload)
    parsed = event.parse()
    assert isinstance(parsed, MonitorUpdated)
    assert parsed.slo is None


def test_the_slo_contract_takes_a_fraction_and_a_window_like_the_slo_api() -> None:
    assert SloSetting(objective=0.999) == SloSetting(objective=0.999, window_days=30)
    for bad in ({"objective": 99.9}, {"objective": 0}, {"objective": 0.9, "window_days": 366}):
        with pytest.raises(ValidationError):
            SloSetting.model_validate(bad)
    created = MonitorCreated.model_validate(
        {
            "monitor_id": "00000000-0000-4000-8000-000000000001",
            "name": "shop",
            "type": "http",
            "target": "https://shop.example/",
            "interval_seconds": 60,
            "slo": {"objective": 0.99},
        }
    )
    assert created.model_dump(mode="json")["slo"] == {"objective": 0.99, "window_days": 30}


def test_every_reference_of_the_asyncapi_document_resolves() -> None:
    published = document()
    text = repr(published)
    names = set(re.findall(r"#/components/schemas/(\w+)", text))
    assert {"SloSetting", "Status"} <= names
    assert names <= set(published["components"]["schemas"])


SHOWN = {"objective": 0.999, "window_days": 30}


def plan_for(entry: dict[str, Any], **fields: Any) -> Any:
    return compute_plan([{"name": "Api", **entry}], [monitor("Api", **fields)])


def test_an_slo_written_without_its_window_matches_the_default_window() -> None:
    assert plan_for({"slo": {"objective": 0.999}}, slo=SHOWN).unchanged == ["Api"]


def test_an_slo_change_shows_the_key_that_changed() -> None:
    plan = plan_for({"slo": {"objective": 0.99}}, slo=SHOWN)
    (update,) = plan.updates
    assert "    slo.objective: 0.999 -> 0.99" in plan.render()
    assert update_body(update, {}) == {"slo": {"objective": 0.99}}


def test_an_slo_is_added_and_removed_whole() -> None:
    added = plan_for({"slo": {"objective": 0.99, "window_days": 7}}, slo=None)
    assert '    slo: null -> {"objective": 0.99, "window_days": 7}' in added.render()
    removed = plan_for({"slo": None}, slo=SHOWN)
    (update,) = removed.updates
    assert update_body(update, {}) == {"slo": None}
    assert plan_for({}, slo=SHOWN).unchanged == ["Api"], "left out: not managed"


def test_an_invalid_slo_is_sent_as_written_for_the_api_to_reject() -> None:
    plan = plan_for({"slo": {"objective": 99.9}}, slo=None)
    (update,) = plan.updates
    assert isinstance(update, Update)
    assert update_body(update, {}) == {"slo": {"objective": 99.9}}


def test_an_export_skips_fields_an_older_server_does_not_show() -> None:
    (entry,) = export_document([monitor("Api")])["monitors"]
    assert "slo" not in entry
    (entry,) = export_document([monitor("Api", slo=SHOWN)])["monitors"]
    assert entry["slo"] == SHOWN
    assert list(entry)[-1] == "slo"


slos = st.one_of(
    st.none(),
    st.builds(
        lambda objective, days: {"objective": objective, "window_days": days},
        st.floats(min_value=0.5, max_value=0.99999),
        st.integers(min_value=1, max_value=365),
    ),
)


@given(st.lists(slos, max_size=6))
def test_an_export_with_slos_applies_back_with_no_change(chosen: list[Any]) -> None:
    current = [monitor(f"m{i}", slo=slo) for i, slo in enumerate(chosen)]
    plan = compute_plan(parse_document(export_document(current)), current, prune=True)
    assert not plan.has_changes
