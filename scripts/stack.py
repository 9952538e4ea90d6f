"""The local stack behind `make demo` and `make up`: embedded Redis, migrations, then honcho.

honcho runs Procfile.dev (sandbox bank, gunicorn, a Celery worker, beat, Flower) as real processes.
DATABASE_URL / REDIS_URL in the environment win: then no embedded Redis is started and the given
database is migrated and used as it is.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import requests

from scripts.embedded_redis import DEFAULT_PORT, EmbeddedRedis, is_embedded_url, port_open, redis_answers

PROJECT_DIR = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEFAULT_REDIS_URL = f"redis://127.0.0.1:{DEFAULT_PORT}/0"


class StackError(RuntimeError):
    """The stack could not start: a port is taken, a process died, migrations failed."""


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of a .env file; blanks, comments and empty values are left out."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip().strip("'\"")
        if value:
            values[key.strip()] = value
    return values


@dataclass
class StackConfig:
    """What differs between `make demo` and `make up`: the database, ports, intervals, sandbox flags."""

    database_url: str
    redis_url: str = DEFAULT_REDIS_URL
    web_port: int = 8000
    sandbox_port: int = 8100
    flower_port: int = 5555
    sandbox_args: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    beat_schedule: Path = PROJECT_DIR / "var" / "celerybeat-schedule"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    @property
    def flower_url(self) -> str:
        return f"http://127.0.0.1:{self.flower_port}"

    def metrics_urls(self, env: Mapping[str, str] | None = None) -> str:
        """Where Prometheus scrapes this stack (docs/monitoring.md): the web's /metrics, and the worker's
        and beat's exporters when WORKER_METRICS_PORT / BEAT_METRICS_PORT are set."""
        env = os.environ if env is None else env
        urls = [f"{self.web_url}/metrics"]
        for kind in ("worker", "beat"):
            port = env.get(f"{kind.upper()}_METRICS_PORT")
            if port:
                urls.append(f"{kind} http://127.0.0.1:{port}/metrics")
        return "  ".join(urls)

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment every process of the stack gets."""
        env = dict(os.environ if base is None else base)
        env.update(self.extra_env)
        env.update(
            DATABASE_URL=self.database_url,
            BROKER_URL=self.redis_url,  # the broker (BROKER_URL, else REDIS_URL, else the embedded Redis)
            REDIS_URL=env.get("REDIS_URL") or self.redis_url,
            QPAY_API_BASE_URL=env.get("QPAY_API_BASE_URL") or f"{self.sandbox_url}/QPay.WebAPI/api/",
            PUBLIC_BASE_URL=env.get("PUBLIC_BASE_URL") or self.web_url,
            WEB_PORT=str(self.web_port),
            SANDBOX_PORT=str(self.sandbox_port),
            FLOWER_PORT=str(self.flower_port),
            SANDBOX_ARGS=self.sandbox_args,
            BEAT_SCHEDULE=str(self.beat_schedule),
            PYTHONPATH=str(PROJECT_DIR),
            PYTHONUNBUFFERED="1",
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        )
        return env


def wait_until(check: Callable[[], object], timeout: float, what: str,
               alive: Callable[[], bool] = lambda: True) -> None:
    """Poll `check` until truthy; fail fast if the stack died, or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:  # noqa: S110 - a server still starting refuses connections: not yet
            pass
        if not alive():
            raise StackError(f"the stack stopped while waiting for {what}")
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)  # pacing between polls


def http_up(url: str) -> bool:
    return requests.get(url, timeout=2).status_code < 500


# honcho's report that a process runs: "12:00:01 system    | web.1 started (pid=4242)".
_STARTED = re.compile(rb"\bsystem\s+\| (\w+)\.\d+ started \(pid=")


class Stack:
    """Start and stop the whole local system; `output` receives honcho's merged, prefixed logs."""

    def __init__(self, config: StackConfig, output: IO[bytes] | None = None) -> None:
        self.config = config
        self.output = output
        self.redis: EmbeddedRedis | None = None
        self.honcho: subprocess.Popen[bytes] | None = None
        self.started: set[str] = set()  # processes honcho has reported started ("web.1 started")
        self._relay: threading.Thread | None = None

    # -- start -----------------------------------------------------------------------------------
    def check_ports(self) -> None:
        for name, port in (("WEB_PORT", self.config.web_port), ("SANDBOX_PORT", self.config.sandbox_port),
                           ("FLOWER_PORT", self.config.flower_port)):
            if port_open("127.0.0.1", port):
                raise StackError(f"port {port} is already in use: stop what holds it or set {name}")

    def start_redis(self) -> str:
        """The embedded Redis when REDIS_URL is the default one; an external one is only checked."""
        url = self.config.redis_url
        if not is_embedded_url(url):
            return f"external broker {_redacted(url)}"
        if redis_answers("127.0.0.1", DEFAULT_PORT):
            return f"a Redis already running on 127.0.0.1:{DEFAULT_PORT} (reused)"
        self.redis = EmbeddedRedis(DEFAULT_PORT).start()
        return f"embedded Redis on 127.0.0.1:{DEFAULT_PORT} (no persistence)"

    def migrate(self) -> None:
        """The Procfile's release step, run exactly as a platform would."""
        argv = [str(BIN / "flask"), "--app", "webhook", "db", "upgrade"]
        result = subprocess.run(argv, cwd=PROJECT_DIR, env=self.config.env(), capture_output=True, text=True,
                                timeout=120, check=False)
        if result.returncode != 0:
            raise StackError(f"migrations failed (exit {result.returncode}):\n{result.stdout}{result.stderr}")

    def start_processes(self) -> None:
        self.config.beat_schedule.parent.mkdir(parents=True, exist_ok=True)
        # `-e /dev/null`: the environment is already complete; honcho must not re-read .env over it.
        argv = [str(BIN / "honcho"), "start", "-f", "Procfile.dev", "-e", os.devnull, "--no-colour"]
        # A session of its own: a Ctrl-C in the terminal reaches only the script, which stops honcho with
        # SIGTERM once honcho has reported every process started (honcho crashes on a signal before it
        # has taken in a started process's pid, orphaning them). Its output is relayed to `output` (or
        # this terminal) by a thread that notes those reports.
        self.honcho = subprocess.Popen(argv, cwd=PROJECT_DIR, env=self.config.env(),
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self._relay = threading.Thread(target=self._relay_output, args=(self.honcho.stdout,),
                                       name="honcho-output", daemon=True)
        self._relay.start()

    def _relay_output(self, source: IO[bytes]) -> None:
        sink = self.output if self.output is not None else sys.stdout.buffer
        for line in source:
            found = _STARTED.search(line)
            if found:
                self.started.add(found.group(1).decode())
            sink.write(line)
            sink.flush()

    def alive(self) -> bool:
        return self.honcho is not None and self.honcho.poll() is None

    def wait_ready(self, log: Callable[[], str] | None = None, timeout: float = 60.0) -> None:
        """Sandbox and web answer over HTTP, Flower listens, and (given the log) worker and beat started."""
        c = self.config
        wait_until(lambda: http_up(f"{c.sandbox_url}/sandbox/faults"), timeout, "the sandbox", self.alive)
        wait_until(lambda: http_up(f"{c.web_url}/healthz"), timeout, "the web app (/healthz)", self.alive)
        wait_until(lambda: port_open("127.0.0.1", c.flower_port), timeout, "Flower", self.alive)
        if log is not None:
            wait_until(lambda: " ready." in log(), timeout, "the Celery worker", self.alive)
            wait_until(lambda: "beat: Starting" in log(), timeout, "Celery beat", self.alive)

    # -- stop ------------------------------------------------------------------------------------
    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM honcho (it stops every process, SIGKILLing stragglers), then the embedded Redis.

        honcho started mid-way crashes on SIGTERM and leaves its processes running, so stop first waits
        (briefly) until honcho has reported every process started, and afterwards ends any process
        group honcho left behind.
        """
        code = None
        if self.honcho is not None:
            own = self.honcho.pid  # honcho leads a session, so its group id is its pid
            if self.honcho.poll() is None:
                names = set(read_procfile(PROJECT_DIR / "Procfile.dev"))
                deadline = time.monotonic() + 15
                while (self.honcho.poll() is None and time.monotonic() < deadline
                       and not names <= self.started):
                    time.sleep(0.1)  # pacing: honcho starts its processes one by one
            groups = _descendant_groups(own) | {own}
            if self.honcho.poll() is None:
                self.honcho.send_signal(signal.SIGTERM)
            try:
                code = self.honcho.wait(timeout)
            except subprocess.TimeoutExpired:
                self.honcho.kill()
                code = self.honcho.wait(10)
            if self._relay is not None:
                self._relay.join(timeout=5)  # the rest of honcho's output, up to its end
            _end_groups(groups)
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        return code


def read_procfile(path: Path) -> dict[str, str]:
    """Process name -> command of a Procfile (comments and blank lines left out)."""
    entries: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = command.strip()
    return entries


def _descendant_groups(pid: int) -> set[int]:
    """The process groups of every process below `pid`, its own group included. honcho runs each
    process from a forked helper, in a session (and group) of its own. Linux /proc; elsewhere empty,
    and stopping relies on honcho alone."""
    parents: dict[int, tuple[int, int]] = {}  # pid -> (ppid, pgid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            parents[int(stat.parent.name)] = (int(fields[1]), int(fields[2]))
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
    below: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, (ppid, _) in parents.items() if ppid in frontier} - below
        below |= frontier
    return {parents[p][1] for p in below if p in parents}


def _end_groups(groups: set[int], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL, whatever still runs in these process groups (normally nothing)."""
    alive = {g for g in groups if _group_alive(g)}
    for group in alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)  # pacing while they exit
        alive = {g for g in alive if _group_alive(g)}
    for group in alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _redacted(url: str) -> str:
    """A broker URL without its password, for printing."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"
