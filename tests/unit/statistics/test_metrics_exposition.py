"""The per-monitor gauges rendered ahead of the scrape are the bytes prometheus_client would
render for the same samples."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from pingtower.common.events import Status
from pingtower.statistics.metrics import (
    FAMILIES,
    UP_STATUSES,
    Exposition,
    MonitorGauges,
    MonitorSample,
)


class ThroughTheClient(Collector):
    """The gauges as prometheus_client families, as they were built at every scrape."""

    def __init__(self, samples: Sequence[MonitorSample]) -> None:
        self.samples = samples

    def collect(self) -> Iterable[Metric]:
        status, up, latency, uptime = (
            GaugeMetricFamily(name, help_text, labels=["tenant", "monitor_id", "name", "status"])
            if index == 0
            else GaugeMetricFamily(name, help_text, labels=["tenant", "monitor_id", "name"])
            for index, (name, help_text) in enumerate(FAMILIES.items())
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


def client_rendering(samples: Sequence[MonitorSample]) -> bytes:
    registry = CollectorRegistry()
    registry.register(ThroughTheClient(samples))
    return generate_latest(registry)


SAMPLES = [
    MonitorSample("acme", str(uuid.UUID(int=i)), f"shop {i}", status, latency, uptime)
    for i, (status, latency, uptime) in enumerate(
        [
            (Status.UP, 12.5, 1.0),
            (Status.DOWN, None, 0.0),
            (Status.PAUSED, 3e7, None),
            (Status.UNKNOWN, None, None),
            (Status.DEGRADED, 0.1, 1 / 3),
            (Status.PENDING, 1234567.0, 0.999),
            (Status.MAINTENANCE, float("inf"), float("nan")),
            (Status.UP, 999999.9, 1e-7),
            (Status.DOWN, 1e6, -0.0),
        ]
    )
] + [
    MonitorSample(
        'we"ird\\ten\nant', str(uuid.UUID(int=99)), 'a "quoted"\\name\nhere', Status.UP, 1, 1
    )
]


def test_the_rendering_is_what_prometheus_client_renders() -> None:
    exposition = Exposition()
    exposition.add(SAMPLES)
    assert exposition.render() == client_rendering(SAMPLES)


def test_pages_rendered_one_after_another_make_the_whole() -> None:
    exposition = Exposition()
    for i in range(0, len(SAMPLES), 3):
        exposition.add(SAMPLES[i : i + 3])
    assert exposition.render() == client_rendering(SAMPLES)


def test_no_monitors_still_declare_the_families() -> None:
    rendered = MonitorGauges().text()
    assert rendered == client_rendering([])
    names = [family.name for family in text_string_to_metric_families(rendered.decode())]
    assert names == list(FAMILIES)


def test_an_update_without_a_rendering_renders_its_samples() -> None:
    gauges = MonitorGauges()
    gauges.update(SAMPLES[:2])
    assert gauges.samples == tuple(SAMPLES[:2])
    assert gauges.text() == client_rendering(SAMPLES[:2])
