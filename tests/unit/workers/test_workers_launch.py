"""workers.launch: WORKER_PROCESSES Celery workers from one Procfile line, unique node names."""

from __future__ import annotations

import sys

import pytest

from workers import launch


@pytest.mark.parametrize(("argv", "index", "name"), [
    ([], 0, "celery@%h"),
    ([], 1, "celery2@%h"),
    (["-n", "worker1@%h"], 0, "worker1@%h"),
    (["--hostname", "w@box"], 2, "w3@box"),
    (["--hostname=w"], 1, "w2@%h"),
])
def test_each_worker_gets_a_unique_node_name(argv, index, name):
    assert launch.hostname(index, argv) == name


def test_the_given_hostname_is_replaced_and_every_other_option_kept():
    argv = ["-Q", "callbacks,sweep", "-n", "w@%h", "--pool", "threads", "--concurrency", "16"]
    assert launch.worker_argv(1, argv) == [
        sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "callbacks,sweep",
        "--pool", "threads", "--concurrency", "16", "--hostname", "w2@%h"]


def test_a_bad_worker_processes_value_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setenv("WORKER_PROCESSES", "many")
    assert launch.main([]) == 2
    assert "WORKER_PROCESSES must be a whole number" in capsys.readouterr().err
