"""Service level objectives: error budget and multi-window burn-rate alerts.

An objective of 99.9% over 30 days allows 0.1% of the counted time to be down: that is the error
budget. The burn rate over a window is how fast it is being spent there: (1 − uptime) / (1 −
objective), so 1.0 spends exactly the budget by the end of the period. An alert fires when both a
long and a short window burn faster than a threshold (the long window proves it matters, the
short one that it is still happening), as in Google's SRE workbook; the thresholds below are the
workbook's, which for a 30-day budget mean 2% of it spent in one hour or 5% in six hours.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from pingtower.statistics.domain.uptime import UptimeFigures


@dataclass(frozen=True)
class BurnRule:
    long: timedelta
    short: timedelta
    threshold: float


RULES: tuple[BurnRule, ...] = (
    BurnRule(timedelta(hours=1), timedelta(minutes=5), 14.4),
    BurnRule(timedelta(hours=6), timedelta(minutes=30), 6.0),
)


def check_objective(objective: float) -> float:
    if not 0.0 < objective < 1.0:
        raise ValueError("objective must be between 0 and 1, exclusive (0.999 for 99.9%)")
    return objective


def burn_rate(figures: UptimeFigures, objective: float) -> float:
    """How many times faster than allowed the budget burns; 0 without counted time."""
    ratio = figures.ratio
    if ratio is None:
        return 0.0
    return (1.0 - ratio) / (1.0 - check_objective(objective))


@dataclass(frozen=True)
class Budget:
    objective: float
    uptime: float | None
    consumed: float
    """Share of the period's error budget spent; above 1 the objective is missed."""

    @property
    def remaining(self) -> float:
        return 1.0 - self.consumed


def error_budget(figures: UptimeFigures, objective: float) -> Budget:
    return Budget(objective, figures.ratio, burn_rate(figures, objective))


@dataclass(frozen=True)
class BurnAlert:
    rule: BurnRule
    burn_long: float
    burn_short: float


def burn_alerts(
    figures_over: Callable[[timedelta], UptimeFigures],
    objective: float,
    rules: Sequence[BurnRule] = RULES,
) -> list[BurnAlert]:
    """The rules whose long and short windows (ending now) both burn above their threshold.

    `figures_over(w)` gives the uptime figures of the window of length `w` ending now."""
    alerts = []
    for rule in rules:
        long = burn_rate(figures_over(rule.long), objective)
        short = burn_rate(figures_over(rule.short), objective)
        if long > rule.threshold and short > rule.threshold:
            alerts.append(BurnAlert(rule, long, short))
    return alerts
