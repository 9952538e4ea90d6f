"""The exporter of worker and beat (off when unset, a free port of its range) and gunicorn's
multiprocess directory (emptied at start, private when unset)."""

from __future__ import annotations

import socket
from pathlib import Path

import requests

from metrics import exporter, multiproc
from tests.support.services import free_port


def test_the_exporter_is_off_without_its_port_variable():
    assert exporter.start("worker", {}) is None


def test_a_second_process_on_the_same_host_takes_the_next_free_port():
    base = free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", base))  # another worker already holds the first port
    try:
        port = exporter.start("worker", {"WORKER_METRICS_PORT": str(base), "METRICS_PORT_SPAN": "8"})
    finally:
        holder.close()
    assert port is not None
    assert base < port < base + 8
    body = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert "qpay_resolve_retries_total" in body


def test_no_free_port_in_the_range_turns_metrics_off_in_that_process():
    base = free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", base))
    try:
        assert exporter.start("beat", {"BEAT_METRICS_PORT": str(base), "METRICS_PORT_SPAN": "1"}) is None
    finally:
        holder.close()


def test_a_given_directory_is_emptied_of_a_previous_run(tmp_path: Path):
    (tmp_path / "counter_123.db").write_bytes(b"old")
    env = {multiproc.ENV: str(tmp_path)}
    path, created = multiproc.prepare(env)
    assert (path, created) == (tmp_path, False)
    assert list(tmp_path.iterdir()) == []


def test_without_a_directory_each_server_gets_a_private_one_removed_at_exit():
    env_a: dict[str, str] = {}
    env_b: dict[str, str] = {}
    a, created_a = multiproc.prepare(env_a)
    b, created_b = multiproc.prepare(env_b)
    try:
        assert created_a
        assert created_b
        assert a != b
        assert env_a[multiproc.ENV] == str(a)
    finally:
        multiproc.cleanup(a, created_a)
        multiproc.cleanup(b, created_b)
    assert not a.exists()
    assert not b.exists()
