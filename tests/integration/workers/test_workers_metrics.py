"""Worker exporters on one host: several workers given the same WORKER_METRICS_PORT each take their own
port of the range, and under prefork every child (which runs the tasks) serves its own counters."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from tests.support import procs
from tests.support.poll import wait_for
from tests.support.services import TempRedis, free_port

pytestmark = pytest.mark.integration

EXPORTER = re.compile(r"worker exporter on http://127\.0\.0\.1:(\d+)/metrics")


def _ports(proc: procs.Proc, count: int) -> set[int]:
    def found() -> set[int] | None:
        ports = {int(p) for p in EXPORTER.findall(proc.log())}
        return ports if len(ports) >= count else None

    ports = wait_for(found, timeout=30, message=f"{count} exporter port(s) in the log of {proc.name}")
    assert ports is not None
    return ports


def _serves_worker_metrics(port: int) -> bool:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return "qpay_resolve_retries_total" in text and "qpay_settlement_seconds_bucket" in text


def test_two_workers_on_one_host_take_two_ports_of_the_range(redis_server: TempRedis, tmp_path: Path) -> None:
    base = free_port()
    env = procs.base_env(REDIS_URL=redis_server.url, DATABASE_URL=f"sqlite:///{tmp_path / 'w.db'}",
                         WORKER_METRICS_PORT=str(base), METRICS_PORT_SPAN="8")
    first = procs.start_worker(env, name="m1")
    second = procs.start_worker(env, name="m2")
    try:
        ports = _ports(first, 1) | _ports(second, 1)
        assert len(ports) == 2
        assert all(base <= p < base + 8 for p in ports)
        assert all(_serves_worker_metrics(p) for p in ports)
    finally:
        second.stop()
        first.stop()


def test_each_prefork_child_serves_its_own_exporter(redis_server: TempRedis, tmp_path: Path) -> None:
    base = free_port()
    env = procs.base_env(REDIS_URL=redis_server.url, DATABASE_URL=f"sqlite:///{tmp_path / 'w.db'}",
                         WORKER_METRICS_PORT=str(base), METRICS_PORT_SPAN="8")
    worker = procs.start_worker(env, name="prefork", concurrency=2, pool="prefork")
    try:
        ports = _ports(worker, 2)
        assert len(ports) == 2  # the two children; the main process runs no task and serves none
        assert all(_serves_worker_metrics(p) for p in ports)
    finally:
        worker.stop()
