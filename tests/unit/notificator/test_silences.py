"""Which monitors a silence holds back, and when."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from pingtower.notificator.domain.rules import MonitorView
from pingtower.notificator.domain.silences import Silence, is_silenced

START = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
END = START + timedelta(hours=2)
MONITOR = MonitorView(uuid.uuid4(), "acme", "db", tags=("db", "eu"))


def silence(**fields: object) -> Silence:
    values: dict[str, object] = {
        "silence_id": uuid.uuid4(),
        "tenant": "acme",
        "starts_at": START,
        "ends_at": END,
    }
    values.update(fields)
    return Silence(**values)  # type: ignore[arg-type]


@given(st.integers(min_value=-10_000, max_value=20_000))
def test_a_silence_holds_from_its_start_until_just_before_its_end(offset: int) -> None:
    at = START + timedelta(seconds=offset)
    assert silence().matches(MONITOR, at) == (START <= at < END)


def test_a_silence_matches_by_tag_or_id_within_its_workspace() -> None:
    during = START + timedelta(minutes=5)
    assert silence(tags=frozenset({"db"})).matches(MONITOR, during)
    assert not silence(tags=frozenset({"web"})).matches(MONITOR, during)
    assert silence(monitor_ids=frozenset({MONITOR.monitor_id})).matches(MONITOR, during)
    assert not silence(tenant="globex").matches(MONITOR, during)


def test_any_matching_silence_silences() -> None:
    during = START + timedelta(minutes=5)
    assert is_silenced([silence(tags=frozenset({"web"})), silence()], MONITOR, during)
    assert not is_silenced([], MONITOR, during)
