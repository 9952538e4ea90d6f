"""The bank client's connection pool follows the worker's concurrency (a threads pool shares it)."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from celery.signals import celeryd_after_setup

import workers  # noqa: F401  (connects the signal handlers)
from core import db
from core.sinopac.transport import DEFAULT_POOL_SIZE
from workers import bank


@pytest.fixture(autouse=True)
def _fresh_client() -> Iterator[None]:
    bank.reset_client()
    bank.size_pool(DEFAULT_POOL_SIZE)
    db.size_pool(db.DEFAULT_POOL_SIZE)
    yield
    bank.reset_client()
    bank.size_pool(DEFAULT_POOL_SIZE)
    db.size_pool(db.DEFAULT_POOL_SIZE)


def _pool_maxsize() -> int:
    pool = bank.bank_client()._http  # type: ignore[attr-defined]  # the client's own urllib3 pool
    return int(pool.pool.maxsize)  # connections it keeps open (a LifoQueue of that size)


def test_a_worker_with_32_slots_keeps_32_bank_connections() -> None:
    # given a worker set up with concurrency 32 (e.g. -P threads -c 32)
    celeryd_after_setup.send(sender="w1@host", instance=SimpleNamespace(concurrency=32), conf=None)
    # when its process builds the bank client
    size = _pool_maxsize()
    # then the client keeps one connection per slot
    assert size == 32


def test_a_small_worker_keeps_the_default_pool() -> None:
    # given a worker set up with concurrency 2 (prefork: one task per child)
    celeryd_after_setup.send(sender="w1@host", instance=SimpleNamespace(concurrency=2), conf=None)
    # when its process builds the bank client
    size = _pool_maxsize()
    # then the pool stays at the default, never below it
    assert size == DEFAULT_POOL_SIZE


def test_a_worker_with_16_slots_keeps_16_database_connections() -> None:
    # given a threads worker set up with concurrency 16 (each slot holds a connection during its bank call)
    celeryd_after_setup.send(sender="w1@host", instance=SimpleNamespace(concurrency=16), conf=None)
    # when its process builds a PostgreSQL engine (building it opens no connection)
    engine = db.make_engine("postgresql+psycopg2://u@127.0.0.1:1/x")
    # then the pool keeps one connection per slot
    assert engine.pool.size() == 16  # type: ignore[attr-defined]
    engine.dispose()


def test_a_small_worker_keeps_the_default_database_pool() -> None:
    celeryd_after_setup.send(sender="w1@host", instance=SimpleNamespace(concurrency=2), conf=None)
    engine = db.make_engine("postgresql+psycopg2://u@127.0.0.1:1/x")
    assert engine.pool.size() == db.DEFAULT_POOL_SIZE  # type: ignore[attr-defined]
    engine.dispose()
