"""Per-monitor figures that are costly to read for a whole workspace, computed in the background.

The 24-hour p95 of a thousand monitors merges ~13 stored histograms each; doing that on every
dashboard refresh costs more than a second. The service recomputes it on a timer (with the
Prometheus gauges) and the overview uses the result while it is fresh, computing live only
the monitors the snapshot does not know yet. A figure is at most `max_age` old.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass
class LatencySnapshot:
    max_age: timedelta = timedelta(minutes=2)
    taken_at: datetime | None = None
    p95_24h: Mapping[uuid.UUID, float | None] = field(default_factory=dict)

    def update(self, taken_at: datetime, p95_24h: Mapping[uuid.UUID, float | None]) -> None:
        self.taken_at = taken_at
        self.p95_24h = dict(p95_24h)

    def fresh(self, now: datetime) -> Mapping[uuid.UUID, float | None]:
        """The figures if taken within `max_age` before `now` (never from the future)."""
        if self.taken_at is None or not timedelta(0) <= now - self.taken_at <= self.max_age:
            return {}
        return self.p95_24h
