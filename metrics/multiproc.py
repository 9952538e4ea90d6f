"""Prometheus' multiprocess mode for the web server: several gunicorn worker processes, one /metrics.

Each worker process writes its counters to memory-mapped files in PROMETHEUS_MULTIPROC_DIR and the
worker answering a scrape sums them all (prometheus_client's MultiProcessCollector). gunicorn.conf.py
calls `prepare` in the master before any worker starts (the variable must be set before a worker imports
prometheus_client), `process_exited` when a worker exits and `cleanup` when the server stops.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

# prometheus_client is imported only inside the functions: it picks its value store (memory or files)
# when first imported, so the gunicorn master must set the directory before anyone imports it.
ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare(env: MutableMapping[str, str] | None = None) -> tuple[Path, bool]:
    """Set up the directory, empty: files of a previous run would add their counts to this one's.

    PROMETHEUS_MULTIPROC_DIR if set (its *.db files are removed), else a fresh private directory, so
    two servers on one host never share one. Returns the directory and whether it was created here.
    """
    env = os.environ if env is None else env
    given = env.get(ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
        return path, False
    path = Path(tempfile.mkdtemp(prefix="qpay-prometheus-"))
    env[ENV] = str(path)
    return path, True


def process_exited(pid: int) -> None:
    """Forget a dead worker's live gauges (its counters stay: they are part of the totals)."""
    if os.environ.get(ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def cleanup(path: Path, created: bool) -> None:
    if created:
        shutil.rmtree(path, ignore_errors=True)


def registry() -> CollectorRegistry:
    """What a scrape reads: every process's files in multiprocess mode, else this process's metrics."""
    from prometheus_client import REGISTRY, CollectorRegistry, multiprocess

    if not os.environ.get(ENV):
        return REGISTRY
    combined = CollectorRegistry()
    multiprocess.MultiProcessCollector(combined)
    return combined
