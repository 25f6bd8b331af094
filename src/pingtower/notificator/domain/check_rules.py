"""Rules decided from every check result rather than from status changes.

Latency: a rule with a threshold opens an alert when that many successful checks in a row were
slower than the threshold, and resolves it at the first successful check below it. A failed check
says nothing about latency (the status rules tell about failures), so it neither counts nor
breaks the run.

Certificate expiry: a rule with day thresholds (say 30, 7, 1) tells once per certificate and
threshold, as the certificate comes within it. A certificate first seen already within several
thresholds is told about once, for the smallest; a renewed certificate (another expiry time)
starts afresh.

The state per (rule, monitor) is two small values each, kept with the monitor's projection row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

DAY_SECONDS = 86_400


@dataclass(frozen=True)
class CheckSample:
    """What the rules need of one check result."""

    at: datetime
    succeeded: bool  # up or degraded: the latency measures a working target
    latency_ms: float | None = None
    cert_expires_at: datetime | None = None


class LatencyChange(StrEnum):
    OPEN = "open"
    RESOLVE = "resolve"


@dataclass(frozen=True)
class LatencyState:
    slow_streak: int = 0
    alerting: bool = False


def latency_step(
    state: LatencyState, sample: CheckSample, threshold_ms: float, checks: int
) -> tuple[LatencyState, LatencyChange | None]:
    """The state after `sample`, and whether the latency alert opens or resolves now."""
    if not sample.succeeded or sample.latency_ms is None:
        return state, None
    if sample.latency_ms > threshold_ms:
        streak = min(state.slow_streak + 1, checks)  # bounded: only "enough" matters
        if not state.alerting and streak >= checks:
            return LatencyState(streak, alerting=True), LatencyChange.OPEN
        return LatencyState(streak, state.alerting), None
    if state.alerting:
        return LatencyState(0, alerting=False), LatencyChange.RESOLVE
    return LatencyState(0, alerting=False), None


@dataclass(frozen=True)
class CertState:
    expires_at: datetime | None = None  # the certificate last seen
    warned_days: int | None = None  # the smallest threshold told about for that certificate


@dataclass(frozen=True)
class CertNotice:
    threshold_days: int
    days_left: float
    expires_at: datetime


@dataclass(frozen=True)
class CertOutcome:
    state: CertState
    notice: CertNotice | None = None
    # A certificate we had warned about was replaced: its alert is over.
    renewed: bool = False


def cert_step(state: CertState, sample: CheckSample, thresholds: Iterable[int]) -> CertOutcome:
    expires_at = sample.cert_expires_at
    if expires_at is None:
        return CertOutcome(state)  # no certificate seen (a failed check, or not TLS)
    renewed = False
    if state.expires_at != expires_at:
        renewed = state.warned_days is not None
        state = CertState(expires_at, None)
    days_left = (expires_at - sample.at).total_seconds() / DAY_SECONDS
    crossed = [days for days in thresholds if days_left <= days]
    if not crossed:
        if state.warned_days is None:
            state = CertState()  # nothing told yet: nothing worth remembering
        return CertOutcome(state, renewed=renewed)
    smallest = min(crossed)
    if state.warned_days is not None and state.warned_days <= smallest:
        return CertOutcome(state, renewed=renewed)
    notice = CertNotice(smallest, days_left, expires_at)
    return CertOutcome(CertState(expires_at, smallest), notice, renewed)


# --- the stored form: {rule id: {"slow": n, "alerting": bool, "cert": iso, "warned": days}} --


@dataclass(frozen=True)
class RuleCheckState:
    latency: LatencyState = LatencyState()
    cert: CertState = CertState()

    def dump(self) -> dict[str, Any]:
        return {
            "slow": self.latency.slow_streak,
            "alerting": self.latency.alerting,
            "cert": self.cert.expires_at.isoformat() if self.cert.expires_at else None,
            "warned": self.cert.warned_days,
        }

    @classmethod
    def load(cls, stored: Mapping[str, Any] | None) -> RuleCheckState:
        if not stored:
            return cls()
        cert = stored.get("cert")
        return cls(
            LatencyState(int(stored.get("slow", 0)), bool(stored.get("alerting", False))),
            CertState(
                datetime.fromisoformat(cert) if cert else None,
                None if stored.get("warned") is None else int(stored["warned"]),
            ),
        )

    @property
    def empty(self) -> bool:
        return self == RuleCheckState()
