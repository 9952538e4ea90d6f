"""Real processes for integration tests: started with an explicit environment, awaited by polling,
stopped as a whole process group, their output kept in a log file for failure messages."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import requests

from tests.support.poll import wait_for
from tests.support.services import PROJECT_DIR, free_port

BIN = Path(sys.executable).parent


def base_env(**overrides: str) -> dict[str, str]:
    """The environment of a child process: this one's, the project on the path, then overrides."""
    # BROKER_URL would win over the REDIS_URL a test passes (core.endpoints.broker_url_from).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("QPAY_", "PYTEST_")) and k != "BROKER_URL"}
    env.update(PYTHONPATH=str(PROJECT_DIR), PYTHONUNBUFFERED="1", PATH=f"{BIN}:{env.get('PATH', '')}")
    env.update(overrides)
    return env


class Proc:
    """One child process (and its children: it leads a new session, so stop() reaches them all)."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], cwd: Path = PROJECT_DIR) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.cwd = cwd
        self.log_path = Path(tempfile.mkdtemp(prefix=f"qpay-{name}-")) / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.popen = subprocess.Popen(
            self.argv, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_ready(self, check: Callable[[], object], timeout: float = 30.0) -> Proc:
        def ready() -> object:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited early:\n{self.log()[-4000:]}")
            return check()

        try:
            wait_for(ready, timeout=timeout, interval=0.1, message=f"{self.name} to be ready")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n--- {self.name} log ---\n{self.log()[-4000:]}") from exc
        return self

    def signal_group(self, sig: int) -> None:
        # Not gated on the leader being alive: its forked children may outlive it in the group.
        if self.popen is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM the group, wait, then SIGKILL what is left. Returns the exit code."""
        if self.popen is None:
            return None
        self.signal_group(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            self.popen.wait(10)
        self.signal_group(signal.SIGKILL)  # stragglers (forked children) of the group
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL the whole group at once: a crash, not a shutdown."""
        self.signal_group(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(10)


def http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code < 500
    except requests.RequestException:
        return False


def start_sandbox(env: Mapping[str, str], port: int | None = None, *args: str) -> tuple[Proc, str]:
    """The sandbox bank on a spare port; returns the process and its base URL."""
    port = port or free_port()
    proc = Proc("sandbox", [sys.executable, "-m", "sandbox", "--host", "127.0.0.1", "--port", str(port),
                            *args], env).start()
    base = f"http://127.0.0.1:{port}"
    proc.wait_ready(lambda: http_ok(f"{base}/sandbox/faults"))
    return proc, base


def start_web(env: Mapping[str, str], port: int | None = None, workers: int = 2) -> tuple[Proc, str]:
    """The real Flask app under gunicorn with the repo's config."""
    port = port or free_port()
    proc = Proc("web", [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
                        "--workers", str(workers), "webhook:create_app()"], env).start()
    base = f"http://127.0.0.1:{port}"
    proc.wait_ready(lambda: http_ok(f"{base}/healthz"))
    return proc, base


def start_worker(env: Mapping[str, str], name: str = "w1", queues: str = "callbacks,sweep,notifications",
                 concurrency: int = 2, pool: str = "threads") -> Proc:
    """A real Celery worker process; ready when it logs that it is ready.

    The pool is production's (Procfile: threads) unless a test is about another one.
    """
    proc = Proc(f"worker-{name}", [str(BIN / "celery"), "-A", "workers", "worker", "-Q", queues,
                                   "-c", str(concurrency), "-P", pool, "-n", f"{name}@%h",
                                   "--without-mingle", "--without-gossip", "-l", "INFO"], env).start()
    proc.wait_ready(lambda: "ready." in proc.log(), timeout=45)
    return proc


def start_beat(env: Mapping[str, str]) -> Proc:
    schedule = Path(tempfile.mkdtemp(prefix="qpay-beat-")) / "schedule"
    proc = Proc("beat", [str(BIN / "celery"), "-A", "workers", "beat", "-s", str(schedule), "-l", "INFO"],
                env).start()
    proc.wait_ready(lambda: "beat: Starting" in proc.log() or "Scheduler:" in proc.log(), timeout=30)
    return proc
