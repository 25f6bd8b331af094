"""The stored forms `sqlite_values` makes by hand are those of the general formatters: the
phases' text is `json.dumps`'s, a time's text is its UTC time with microseconds."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from pingtower.common.sqlite_values import phases_text, utc_text

names = st.one_of(
    st.sampled_from(["dns", "connect", "tls", "ttfb", "total"]),
    st.text(max_size=8),  # quotes, backslashes, `%`, control and non-ASCII characters
)
values = st.one_of(
    st.floats(),  # NaN and the infinities included
    st.sampled_from([0.0, -0.0, 1e-7, 1e22, 5e-324]),
    st.integers(-(10**6), 10**6),
)


@given(st.dictionaries(names, values, max_size=6))
def test_the_phases_text_is_json_dumps(phases: dict[str, float]) -> None:
    assert phases_text(phases) == json.dumps(phases)
    assert phases_text(phases) == json.dumps(phases)  # the second time from its template


zones = st.one_of(
    st.just(UTC),
    st.builds(
        timezone,
        st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23)),
    ),
)


@given(st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(9999, 12, 30)), zones)
def test_a_time_is_stored_as_its_utc_time_with_microseconds(
    naive: datetime, zone: timezone
) -> None:
    value = naive.replace(tzinfo=zone)
    expected = value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", timespec="microseconds")
    assert utc_text(value) == expected
    # Another object of the same second (the formatted seconds are kept per second)
    later = value.replace(microsecond=(value.microsecond + 1) % 1_000_000)
    assert utc_text(later) == later.astimezone(UTC).replace(tzinfo=None).isoformat(
        " ", timespec="microseconds"
    )
