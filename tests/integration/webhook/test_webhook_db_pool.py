"""The receiver's connection pool (core.db.make_engine) against a real PostgreSQL that restarts.

No pre-ping on every checkout: idle connections are pinged, busy ones prove themselves, and a dead one
costs at most one failed request per pool before the whole pool is recycled.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from core.db import CONNECT_TIMEOUT, make_engine
from tests.support import services

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pg() -> Iterator[services.TempPostgres]:
    with services.TempPostgres() as server:
        yield server


def fill_pool(engine: Engine, size: int) -> None:
    """Check out `size` connections at once and return them, so the pool holds that many."""
    conns = [engine.connect() for _ in range(size)]
    for conn in conns:
        conn.execute(text("SELECT 1"))
    for conn in conns:
        conn.close()


def select_one(engine: Engine) -> int:
    with engine.begin() as conn:
        return int(conn.execute(text("SELECT 1")).scalar_one())


def test_idle_connections_are_pinged_and_survive_a_restart(pg: services.TempPostgres):
    # given pooled connections that count as idle at once
    engine = make_engine(pg.admin_url, ping_after_idle=0)
    try:
        fill_pool(engine, 2)
        # when PostgreSQL restarts under them
        pg.stop()
        pg.start()
        # then every next use succeeds: the ping finds them dead and the pool reconnects
        assert [select_one(engine) for _ in range(3)] == [1, 1, 1]
    finally:
        engine.dispose()


def test_busy_connections_cost_one_failure_then_the_whole_pool_recovers(pg: services.TempPostgres):
    # given two pooled connections in steady use (never idle long enough to be pinged)
    engine = make_engine(pg.admin_url, ping_after_idle=3600)
    try:
        fill_pool(engine, 2)
        # when PostgreSQL restarts under them
        pg.stop()
        pg.start()
        # then the first use fails (a 503 for the bank, which resends) ...
        with pytest.raises(OperationalError):
            select_one(engine)
        # ... and the second stale connection is recycled without failing: the pool was invalidated
        assert [select_one(engine) for _ in range(3)] == [1, 1, 1]
    finally:
        engine.dispose()


def test_silent_database_host_fails_within_the_connect_timeout():
    # given a host that accepts TCP connections but never answers (a wedged server or proxy)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        port = server.getsockname()[1]
        engine = make_engine(f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres")
        started = time.monotonic()
        # when a request needs a connection, then it fails after the connect timeout, not minutes
        with pytest.raises(OperationalError):
            select_one(engine)
        elapsed = time.monotonic() - started
        engine.dispose()
    assert CONNECT_TIMEOUT - 0.5 <= elapsed < 2 * CONNECT_TIMEOUT + 3


def test_database_url_connect_timeout_overrides_the_default():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        port = server.getsockname()[1]
        engine = make_engine(f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres?connect_timeout=1")
        started = time.monotonic()
        with pytest.raises(OperationalError):
            select_one(engine)
        elapsed = time.monotonic() - started
        engine.dispose()
    assert elapsed < CONNECT_TIMEOUT - 0.5
