"""A finished day's tails: from each hour with a cell on, the sum of the hours to the day's end."""

from __future__ import annotations

from pingtower.statistics.domain.day_tails import tail_rows
from pingtower.statistics.domain.histogram import Histogram


def stored(*latencies: float) -> bytes:
    histogram = Histogram()
    histogram.extend(latencies)
    return histogram.to_bytes()


def test_every_hour_from_the_first_with_a_cell_has_the_sum_of_the_hours_to_the_days_end() -> None:
    starts = [f"h{hour:02}" for hour in range(24)]
    cells = {5: (2, stored(10.0, 20.0)), 7: (1, stored(30.0))}
    rows = list(tail_rows([("m", "eu", cells)], starts))
    assert [row[2] for row in rows] == [f"h{hour:02}" for hour in range(23, 4, -1)]
    by_hour = {row[2]: row for row in rows}
    assert by_hour["h23"][3] == by_hour["h08"][3] == 0  # no check from 8:00 to the end
    assert by_hour["h07"][3] == by_hour["h06"][3] == 1
    assert by_hour["h05"][3] == 3
    assert Histogram.from_bytes(by_hour["h05"][4]).count == 3
    assert Histogram.from_bytes(by_hour["h06"][4]).count == 1
    assert all(row[:2] == ("m", "eu") for row in rows)


def test_monitors_keep_their_own_tails() -> None:
    starts = list(range(24))
    rows = list(tail_rows([("a", "r", {23: (1, stored(5.0))}), ("b", "r", {0: (4, b"")})], starts))
    assert [(row[0], row[2], row[3]) for row in rows if row[0] == "a"] == [("a", 23, 1)]
    assert len([row for row in rows if row[0] == "b"]) == 24
    assert all(row[3] == 4 for row in rows if row[0] == "b" and row[2] == 0)
