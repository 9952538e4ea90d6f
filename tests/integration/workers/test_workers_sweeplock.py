"""Sweep passes never overlap: a pass sent while another runs is skipped (core/sweeplock.py).
A real Redis (the lease is a Lua script)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis

from core import sweeplock
from tests.support.services import TempRedis
from workers import tasks


@pytest.fixture
def url(monkeypatch) -> Iterator[str]:
    monkeypatch.delenv("BEAT_LOCK_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    with TempRedis() as server:
        yield server.url


@pytest.fixture
def fake(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def test_a_second_pass_is_refused_while_the_first_holds_the_lease_and_allowed_after(fake, url):
    with sweeplock.exclusive_pass(url) as first:
        assert first is True
        assert fake.ttl(sweeplock.SWEEP_LOCK_KEY) > 0
        with sweeplock.exclusive_pass(url) as second:
            assert second is False
    assert fake.get(sweeplock.SWEEP_LOCK_KEY) is None
    with sweeplock.exclusive_pass(url) as third:
        assert third is True


def test_the_lease_is_renewed_while_a_long_pass_runs(fake, url):
    with sweeplock.exclusive_pass(url, ttl=3) as ours:
        assert ours
        fake.expire(sweeplock.SWEEP_LOCK_KEY, 1)  # nearly lapsed; the renewer runs every second
        threading.Event().wait(1.6)
        assert fake.ttl(sweeplock.SWEEP_LOCK_KEY) > 1


def test_an_unreachable_lock_store_lets_the_pass_run(monkeypatch, caplog):
    monkeypatch.delenv("BEAT_LOCK_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    with sweeplock.exclusive_pass(url) as ours:
        assert ours is True
    assert "running the pass without it" in caplog.text


def test_without_a_shared_redis_the_lock_is_per_process(monkeypatch):
    monkeypatch.delenv("BEAT_LOCK_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    with sweeplock.exclusive_pass("amqp://guest@127.0.0.1//") as first:
        assert first
        with sweeplock.exclusive_pass("amqp://guest@127.0.0.1//") as second:
            assert not second


def test_the_sweep_task_skips_while_another_pass_runs(url, monkeypatch):
    monkeypatch.setenv("BEAT_LOCK_URL", url)
    monkeypatch.setattr(tasks, "run_sweep", lambda *a, **k: pytest.fail("a second pass must not run"))
    with sweeplock.exclusive_pass(url):
        assert tasks.sweep.run() == {"skipped": 1}
