"""Per-monitor Prometheus gauges, so an existing Prometheus and Grafana can scrape PingTower.

The figures come from a snapshot that the service refreshes from its database on a timer, not
from the ingest path: every replica exports the same numbers, and a deleted monitor's series
disappear with the next snapshot instead of lingering as stale labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client.core import REGISTRY, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pingtower.common.events import Status

UP_STATUSES = frozenset({Status.UP, Status.DEGRADED, Status.PENDING})


@dataclass(frozen=True)
class MonitorSample:
    tenant: str
    monitor_id: str
    name: str
    status: Status
    last_latency_ms: float | None
    uptime_24h: float | None


class MonitorCollector(Collector):
    def __init__(self) -> None:
        self.samples: Sequence[MonitorSample] = ()

    def update(self, samples: Sequence[MonitorSample]) -> None:
        self.samples = tuple(samples)

    def collect(self) -> Iterable[Metric]:
        labels = ["tenant", "monitor_id", "name"]
        status = GaugeMetricFamily(
            "pingtower_statistics_monitor_status",
            "1 for the monitor's current status (one series per status)",
            labels=[*labels, "status"],
        )
        up = GaugeMetricFamily(
            "pingtower_statistics_monitor_up",
            "1 when the monitor is up, degraded or pending; 0 otherwise",
            labels=labels,
        )
        latency = GaugeMetricFamily(
            "pingtower_statistics_monitor_last_latency_ms",
            "Latency of the monitor's last check, in milliseconds",
            labels=labels,
        )
        uptime = GaugeMetricFamily(
            "pingtower_statistics_monitor_uptime_24h",
            "Time-weighted uptime over the last 24 hours (0..1)",
            labels=labels,
        )
        for sample in self.samples:
            values = [sample.tenant, sample.monitor_id, sample.name]
            for candidate in Status:
                status.add_metric([*values, candidate.value], float(candidate is sample.status))
            up.add_metric(values, float(sample.status in UP_STATUSES))
            if sample.last_latency_ms is not None:
                latency.add_metric(values, sample.last_latency_ms)
            if sample.uptime_24h is not None:
                uptime.add_metric(values, sample.uptime_24h)
        return [status, up, latency, uptime]


MONITORS = MonitorCollector()
REGISTRY.register(MONITORS)
