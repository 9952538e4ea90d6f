"""Processes and services for the benchmarks, on top of tests/support (the same code the tests use)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.support.procs import BIN, Proc, base_env, http_ok
from tests.support.services import (
    PROJECT_DIR,
    TempRedis,
    create_database,
    drop_database,
    ensure_default_postgres,
    free_port,
)

GUNICORN_CONF = PROJECT_DIR / "gunicorn.conf.py"
SANDBOX_SHOP_NO = "NA0001_001"


def gunicorn_argv(app_spec: str, port: int, workers: int | None, threads: int | None) -> list[str]:
    """One argv for all three ingest targets: the repo's config file plus the same overrides."""
    argv = [str(BIN / "gunicorn")]
    if GUNICORN_CONF.exists():
        argv += ["-c", str(GUNICORN_CONF)]
    argv += ["--bind", f"127.0.0.1:{port}"]
    if workers is not None:
        argv += ["--workers", str(workers)]
    if threads is not None:
        argv += ["--threads", str(threads)]
    return [*argv, app_spec]


def start_gunicorn(name: str, app_spec: str, env: Mapping[str, str], *, workers: int | None = None,
                   threads: int | None = None) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc(name, gunicorn_argv(app_spec, port, workers, threads), env).start()
    base = f"http://127.0.0.1:{port}"
    proc.wait_ready(lambda: http_ok(f"{base}/healthz"), timeout=60)
    return proc, base


def app_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of the real app, worker or a control: sandbox keys, local services.

    No bank request budget (QPAY_BANK_RATE=0) unless a benchmark sets one: they measure the pipeline
    against the sandbox, and production's 10 requests/s would be all they measured.
    """
    extra.setdefault("QPAY_BANK_RATE", "0")
    return base_env(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        QPAY_API_BASE_URL=extra.pop("QPAY_API_BASE_URL", f"http://127.0.0.1:{free_port()}/QPay.WebAPI/api/"),
        PUBLIC_BASE_URL="http://127.0.0.1:8000",
        **extra,
    )


@contextlib.contextmanager
def database(keep: bool = False) -> Iterator[str]:
    """A fresh migrated database on the machine's PostgreSQL, dropped afterwards."""
    url = create_database(ensure_default_postgres())
    try:
        yield url
    finally:
        if not keep:
            drop_database(url)


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    with TempRedis() as r:
        yield r.url


@contextlib.contextmanager
def running(proc: Proc) -> Iterator[Proc]:
    try:
        yield proc
    finally:
        proc.stop()


def dsn(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql://")


def python() -> str:
    return sys.executable


def out_dir() -> Path:
    path = PROJECT_DIR / "bench" / "out"
    path.mkdir(parents=True, exist_ok=True)
    return path


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of a process group (Linux /proc): its live processes, plus the
    leader's reaped children (gunicorn recycles workers after max_requests; their time is there)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        # fields[0] is the state (field 3); pgrp is field 5, utime 14, stime 15, cutime 16, cstime 17.
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
            if int(entry) == pgid:
                total += int(fields[13]) + int(fields[14])
    return total / tick
