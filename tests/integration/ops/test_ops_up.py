"""`make up` and Ctrl-C: the script stops every process, in order, and exits 0 — whenever Ctrl-C comes.

A terminal's Ctrl-C sends SIGINT to the whole foreground process group; the test does the same to the
script's group. honcho runs in a session of its own, so a Ctrl-C while it is still starting processes
(where honcho itself would crash and orphan them) is handled by the script's orderly stop.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.embedded_redis import port_open
from tests.support.poll import wait_for
from tests.support.procs import base_env
from tests.support.services import PROJECT_DIR, TempRedis, free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with TempRedis() as server:
        yield server.url


@pytest.mark.parametrize("moment", ["migrations: up to date", "Ctrl-C stops everything"])
def test_ctrl_c_on_make_up_stops_every_process_and_exits_0(tmp_path: Path, redis_url: str, moment: str
                                                           ) -> None:
    # given `make up`'s script on spare ports, its own SQLite file and a private Redis
    ports = {"WEB_PORT": free_port(), "SANDBOX_PORT": free_port(), "FLOWER_PORT": free_port()}
    env = base_env(DATABASE_URL=f"sqlite:///{tmp_path / 'up.db'}", REDIS_URL=redis_url, LOG_LEVEL="INFO",
                   **{k: str(v) for k, v in ports.items()})
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "scripts.up"], cwd=PROJECT_DIR, env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        # when Ctrl-C comes at that moment (right after migrations: while honcho starts processes)
        wait_for(lambda: moment in log_path.read_text(errors="replace"), timeout=90, message=moment)
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    output = log_path.read_text(errors="replace")

    # then the script exits 0 after every process stopped, without a traceback
    assert code == 0, output[-3000:]
    assert "make up: every process stopped" in output
    assert "Traceback" not in output, output[-3000:]
    if moment == "Ctrl-C stops everything":  # the banner was printed: it says where /metrics is
        assert f"metrics  http://127.0.0.1:{ports['WEB_PORT']}/metrics" in output
    # and nothing is left running: every port is free
    for name, port in ports.items():
        wait_for(lambda p=port: not port_open("127.0.0.1", p), timeout=15, message=f"{name} {port} to close")
