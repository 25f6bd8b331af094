"""Error budgets and multi-window burn-rate alerts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from pingtower.statistics.domain.slo import RULES, burn_alerts, burn_rate, error_budget
from pingtower.statistics.domain.uptime import UptimeFigures

H = timedelta(hours=1)
M = timedelta(minutes=1)
ZERO = timedelta(0)


def figures(up: timedelta, down: timedelta) -> UptimeFigures:
    return UptimeFigures(up, down, ZERO)


def test_budget_of_99_9_over_30_days_is_43_minutes_and_12_seconds() -> None:
    counted = timedelta(days=30)
    allowed = counted * (1 - 0.999)
    assert allowed == timedelta(minutes=43, seconds=12)
    spent_half = error_budget(figures(counted - allowed / 2, allowed / 2), 0.999)
    assert spent_half.consumed == pytest.approx(0.5)
    assert spent_half.remaining == pytest.approx(0.5)


def test_missing_the_objective_leaves_a_negative_budget() -> None:
    budget = error_budget(figures(98 * H, 2 * H), 0.99)
    assert budget.consumed == pytest.approx(2.0)
    assert budget.remaining == pytest.approx(-1.0)


def test_no_counted_time_burns_nothing() -> None:
    assert burn_rate(figures(ZERO, ZERO), 0.999) == 0.0


def test_objective_must_be_a_fraction() -> None:
    with pytest.raises(ValueError, match="objective"):
        burn_rate(figures(H, ZERO), 99.9)


def down_for(last: timedelta) -> object:
    """Figures of a monitor that has been down for `last` and up before."""

    def over(window: timedelta) -> UptimeFigures:
        down = min(window, last)
        return figures(window - down, down)

    return over


def test_a_fresh_outage_fires_the_fast_rule() -> None:
    # 20 min down at 99%: the last hour burns 33x, the last 5 min 100x; 6 h burns 5.6x (< 6)
    alerts = burn_alerts(down_for(20 * M), 0.99)  # type: ignore[arg-type]
    assert [alert.rule for alert in alerts] == [RULES[0]]
    assert alerts[0].burn_long == pytest.approx(100 / 3)
    assert alerts[0].burn_short == pytest.approx(100)


def test_an_outage_that_ended_does_not_fire() -> None:
    def over(window: timedelta) -> UptimeFigures:
        # 30 min down, which ended 40 min ago: no short window sees it any more
        down = max(min(window - 40 * M, 30 * M), ZERO)
        return figures(window - down, down)

    assert burn_alerts(over, 0.99) == []


@given(st.integers(0, 24 * 60), st.floats(0.95, 0.9999))
def test_an_ongoing_outage_fires_the_fast_rule_once_it_spent_2_percent_of_a_30_day_budget(
    minutes: int, objective: float
) -> None:
    """Down for d minutes: the last hour burns min(d, 60)/60 / (1 − o), above 14.4 exactly when
    d > 864·(1 − o) minutes, i.e. 2% of a 30-day budget; the 5-minute window agrees earlier."""
    boundary = 864 * (1 - objective)
    assume(abs(minutes - boundary) > 1e-6)
    fired = {alert.rule for alert in burn_alerts(down_for(minutes * M), objective)}  # type: ignore[arg-type]
    assert (RULES[0] in fired) == (minutes > boundary)
