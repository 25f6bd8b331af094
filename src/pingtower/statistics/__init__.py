"""Statistics service: uptime, incidents, latency percentiles, SLOs and reports from the
Pinger's events.

domain/      pure maths: uptime from a status timeline, incidents (MTTR/MTBF), the mergeable
             latency histogram (1% relative error), rollup cells and range covers, SLO burn
             rates, trends, report windows, SVG badges
store/       tables, the ingest effect (idempotent, batched), read queries, SLO evaluation
api/         /api/v1/stats: overview, uptime, incidents, timeseries, trends, SLOs, SLA report,
             public badges
migrations/  the Alembic tree
metrics.py   per-monitor Prometheus gauges;  snapshot.py  background 24 h p95 for the overview
service.py   the wiring: build(settings, bus, roles)
"""
