"""Per-monitor Prometheus gauges, so an existing Prometheus and Grafana can scrape PingTower.

The figures come from a snapshot that the service refreshes from its database on a timer, not
from the ingest path: every replica exports the same numbers, and a deleted monitor's series
disappear with the next snapshot instead of lingering as stale labels.

The snapshot is rendered in Prometheus' text format when it is taken, a page of monitors at a
time (`Exposition`), and /metrics appends those bytes (`common.http.app.RENDERED_METRICS`).
Through prometheus_client, 10,000 monitors are 100,000 samples built, validated and formatted
again at every scrape: seconds of CPU each time. Written here by hand because the client has
no way to serve text rendered ahead; the format is four lines of its specification.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import cast

from prometheus_client.utils import floatToGoString

from pingtower.common.events import Status
from pingtower.common.http.app import RENDERED_METRICS

UP_STATUSES = frozenset({Status.UP, Status.DEGRADED, Status.PENDING})

STATUS = "pingtower_statistics_monitor_status"
UP = "pingtower_statistics_monitor_up"
LATENCY = "pingtower_statistics_monitor_last_latency_ms"
UPTIME = "pingtower_statistics_monitor_uptime_24h"
FAMILIES = {
    STATUS: "1 for the monitor's current status (one series per status)",
    UP: "1 when the monitor is up, degraded or pending; 0 otherwise",
    LATENCY: "Latency of the monitor's last check, in milliseconds",
    UPTIME: "Time-weighted uptime over the last 24 hours (0..1)",
}


@dataclass(frozen=True)
class MonitorSample:
    tenant: str
    monitor_id: str
    name: str
    status: Status
    last_latency_ms: float | None
    uptime_24h: float | None


_go_float = cast(Callable[[float], str], floatToGoString)


def _value(value: float) -> str:
    """prometheus_client's rendering of a sample value: Python's repr, but Go's "+Inf", "-Inf",
    "NaN" and exponents from 1e7 on (the client's own function, for those only)."""
    if -math.inf < value < 1e6:
        return repr(float(value))  # an int too, as the client writes it
    return _go_float(value)


# per current status, each status' value and whether it is that one (enum attribute reads in
# the loop cost more than the formatting)
_STATUS_FLAGS = {
    current: tuple(
        (candidate.value, "1.0" if candidate is current else "0.0") for candidate in Status
    )
    for current in Status
}


def _label_value(value: str) -> str:
    """A label value escaped as the text format wants (backslash, double quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Exposition:
    """The four families' sample lines, added a page of samples at a time (each page's lines
    joined then, so rendering the whole joins a few chunks, not 100,000 lines at once)."""

    def __init__(self) -> None:
        self.chunks: dict[str, list[bytes]] = {name: [] for name in FAMILIES}

    def add(self, samples: Iterable[MonitorSample]) -> None:
        status: list[str] = []
        up: list[str] = []
        latency: list[str] = []
        uptime: list[str] = []
        for sample in samples:
            # in label name order, as prometheus_client writes them
            head = (
                f'monitor_id="{_label_value(sample.monitor_id)}",'
                f'name="{_label_value(sample.name)}",'
            )
            tenant = f'tenant="{_label_value(sample.tenant)}"'
            labels = head + tenant
            for value, flag in _STATUS_FLAGS[sample.status]:
                status.append(f'{STATUS}{{{head}status="{value}",{tenant}}} {flag}\n')
            up.append(f"{UP}{{{labels}}} {'1.0' if sample.status in UP_STATUSES else '0.0'}\n")
            if sample.last_latency_ms is not None:
                latency.append(f"{LATENCY}{{{labels}}} {_value(sample.last_latency_ms)}\n")
            if sample.uptime_24h is not None:
                uptime.append(f"{UPTIME}{{{labels}}} {_value(sample.uptime_24h)}\n")
        for name, lines in ((STATUS, status), (UP, up), (LATENCY, latency), (UPTIME, uptime)):
            self.chunks[name].append("".join(lines).encode())

    def render(self) -> bytes:
        parts: list[bytes] = []
        for name, help_text in FAMILIES.items():
            parts.append(f"# HELP {name} {help_text}\n# TYPE {name} gauge\n".encode())
            parts.extend(self.chunks[name])
        return b"".join(parts)


class MonitorGauges:
    """The latest snapshot's samples and their rendering (swapped together, so a scrape on
    another thread reads one snapshot or the next, never half of each)."""

    def __init__(self) -> None:
        self._current: tuple[Sequence[MonitorSample], bytes] = ((), Exposition().render())

    @property
    def samples(self) -> Sequence[MonitorSample]:
        return self._current[0]

    def update(self, samples: Sequence[MonitorSample], rendered: bytes | None = None) -> None:
        """The new snapshot; `rendered`, its `Exposition` if already made (a page at a time)."""
        if rendered is None:
            exposition = Exposition()
            exposition.add(samples)
            rendered = exposition.render()
        self._current = (tuple(samples), rendered)

    def text(self) -> bytes:
        return self._current[1]


MONITORS = MonitorGauges()
RENDERED_METRICS.append(MONITORS.text)
