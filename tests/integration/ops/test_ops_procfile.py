"""Every Procfile process type starts for real, as a platform would start it (`sh -c` with PORT set).

Each runs against a SQLite file of its own and a private Redis; a process counts as up when it serves
(HTTP) or logs that it is ready, and is then stopped. `release` must migrate and exit 0. The local
stack of `make up` / `make demo` (Procfile.dev under honcho) must come up and go down cleanly too.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool

from scripts.embedded_redis import port_open
from scripts.stack import Stack, StackConfig
from tests.support.poll import wait_for
from tests.support.procs import BIN, Proc, base_env, http_ok
from tests.support.services import PROJECT_DIR, TempRedis, free_port

pytestmark = pytest.mark.integration

TABLES = {"orders", "pay_tokens", "bank_calls", "order_events", "sweep_runs"}
FLOWER_AUTH = ("ops", "procfile-test-pw")


def read_procfile(name: str) -> dict[str, str]:
    entries: dict[str, str] = {}
    for line in (PROJECT_DIR / name).read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, command = line.partition(":")
            entries[key.strip()] = command.strip()
    return entries


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with TempRedis() as server:
        yield server.url


def _env(tmp: Path, redis_url: str, **extra: str) -> dict[str, str]:
    return base_env(
        DATABASE_URL=f"sqlite:///{tmp / 'procfile.db'}",
        REDIS_URL=redis_url,
        API_TOKEN="procfile-test-token",
        FLOWER_BASIC_AUTH=":".join(FLOWER_AUTH),
        BEAT_SCHEDULE=str(tmp / "beat-schedule"),
        LOG_LEVEL="INFO",
        **extra,
    )


def _release(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/bin/sh", "-c", read_procfile("Procfile")["release"]], cwd=PROJECT_DIR, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_procfile_declares_web_worker_beat_flower_and_release() -> None:
    assert set(read_procfile("Procfile")) == {"release", "web", "worker", "beat", "flower"}


@pytest.mark.parametrize("procfile", ["Procfile", "Procfile.dev"])
def test_procfile_worker_consumes_every_queue(procfile: str) -> None:
    worker = read_procfile(procfile)["worker"]
    assert "-Q callbacks,sweep,notifications " in worker


@pytest.mark.parametrize("procfile", ["Procfile", "Procfile.dev"])
def test_honcho_accepts_the_procfile(procfile: str) -> None:
    result = subprocess.run([str(BIN / "honcho"), "check", "-f", procfile], cwd=PROJECT_DIR,
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr


def test_release_migrates_a_fresh_database_and_exits_0_twice(tmp_path: Path, redis_url: str) -> None:
    env = _env(tmp_path, redis_url)

    first, second = _release(env), _release(env)

    assert first.returncode == 0, first.stdout + first.stderr
    assert second.returncode == 0, second.stdout + second.stderr  # a redeploy migrates again: no-op
    engine = create_engine(env["DATABASE_URL"], poolclass=NullPool)
    assert set(inspect(engine).get_table_names()) >= TABLES
    engine.dispose()


def _web_ready(port: int) -> bool:
    return http_ok(f"http://127.0.0.1:{port}/healthz")


def _flower_ready(port: int) -> bool:
    resp = requests.get(f"http://127.0.0.1:{port}/api/workers", auth=FLOWER_AUTH, timeout=2)
    return resp.status_code == 200


@pytest.mark.parametrize("name", ["web", "worker", "beat", "flower"])
def test_process_type_starts_with_a_real_environment(tmp_path: Path, redis_url: str, name: str) -> None:
    # given a migrated database (the release step), a private Redis and a port from the platform
    port = free_port()
    env = _env(tmp_path, redis_url, PORT=str(port))
    assert _release(env).returncode == 0

    # when the process type's command starts exactly as written in the Procfile
    proc = Proc(f"procfile-{name}", ["/bin/sh", "-c", read_procfile("Procfile")[name]], env).start()
    try:
        # then it comes up: serving on $PORT, or logging that it is ready
        ready = {
            "web": lambda: _web_ready(port),
            "worker": lambda: " ready." in proc.log(),
            "beat": lambda: "beat: Starting" in proc.log(),
            "flower": lambda: _flower_ready(port),
        }[name]
        proc.wait_ready(ready, timeout=60)
    finally:
        proc.stop()
    assert not proc.alive()


def test_local_stack_of_make_up_starts_every_process_and_stops_cleanly(tmp_path: Path, redis_url: str
                                                                       ) -> None:
    # given the stack of `make up` on spare ports, its own SQLite file and a private Redis
    config = StackConfig(
        database_url=f"sqlite:///{tmp_path / 'stack.db'}",
        redis_url=redis_url,
        web_port=free_port(),
        sandbox_port=free_port(),
        flower_port=free_port(),
        extra_env={"API_TOKEN": "stack-test-token", "FLOWER_ALLOW_NO_AUTH": "1", "LOG_LEVEL": "INFO"},
        beat_schedule=tmp_path / "beat-schedule",
    )
    log_path = tmp_path / "stack.log"
    with open(log_path, "wb") as log:
        stack = Stack(config, output=log)
        try:
            # when it starts (migrations first, then honcho with Procfile.dev)
            stack.check_ports()
            stack.migrate()
            stack.start_processes()
            # then sandbox, web, Flower, worker and beat all come up
            stack.wait_ready(lambda: log_path.read_text(errors="replace"), timeout=60)
            assert requests.get(f"{config.web_url}/healthz", timeout=5).status_code == 200
        finally:
            code = stack.stop()

    # and stopping ends every process without a SIGKILL, freeing every port
    assert code is not None, "honcho did not exit"
    assert code != -9, log_path.read_text(errors="replace")[-3000:]
    for port in (config.web_port, config.sandbox_port, config.flower_port):
        wait_for(lambda p=port: not port_open("127.0.0.1", p), timeout=10, message=f"port {port} to close")
