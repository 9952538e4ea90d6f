"""Prometheus metrics for every process type (docs/monitoring.md).

core/ stays free of Prometheus: its services return what happened (outcomes, counts, bank call
records) and the entrypoints (views, tasks, the client observers) record it here. This package is the
one place the metric names, labels and buckets are defined; web, worker and beat import it.

- `metrics.defs`: the counters and histograms, and one small function per fact to record.
- `metrics.web`: `GET /metrics` on the web server (multiprocess mode under gunicorn, bearer token).
- `metrics.figures`: the business gauges read at scrape time (database and broker), web only.
- `metrics.exporter`: the HTTP exporter of worker and beat processes.
- `metrics.multiproc`: gunicorn's side of multiprocess mode (directory, dead workers).
"""
