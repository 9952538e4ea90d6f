"""The bank budget's spacing and its fallback, without Redis (the shared one: tests/integration)."""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.budget import LocalBudget, RedisBudget, bank_budget, shared_redis_url
from core.settings import load_settings


def test_local_budget_spaces_requests_one_interval_apart() -> None:
    now = [100.0]
    budget = LocalBudget(10.0, clock=lambda: now[0], sleep=lambda s: None)
    waits = [budget.reserve() for _ in range(4)]
    assert [round(w, 3) for w in waits] == [0.0, 0.1, 0.2, 0.3]
    now[0] = 200.0  # an idle budget does not save up a burst
    assert budget.reserve() == 0.0
    assert round(budget.reserve(), 3) == 0.1


def test_an_unreachable_redis_falls_back_to_a_local_budget_instead_of_failing() -> None:
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2,
                         retry=Retry(NoBackoff(), 0))
    slept: list[float] = []
    budget = RedisBudget(client, 1.0, sleep=slept.append)
    assert budget.acquire() == 0.0
    assert budget.acquire() > 0.5  # the second request of this second waits: the rate still holds
    assert len(slept) == 1


def test_the_shared_redis_is_beat_locks_or_a_redis_broker_and_nothing_else() -> None:
    assert shared_redis_url({}, "redis://h:6379/0") == "redis://h:6379/0"
    assert shared_redis_url({"BEAT_LOCK_URL": "redis://lock/1"}, "amqp://rabbit//") == "redis://lock/1"
    assert shared_redis_url({}, "amqp://rabbit//") is None
    assert shared_redis_url({}, "sentinel://s:26379") is None


def test_no_shared_redis_means_a_budget_per_process_and_rate_zero_means_none() -> None:
    amqp = load_settings({"REDIS_URL": "amqp://guest@rabbit//"})
    assert isinstance(bank_budget(amqp, env={}), LocalBudget)
    assert bank_budget(load_settings({"QPAY_BANK_RATE": "0"}), env={}) is None
    assert isinstance(bank_budget(load_settings({"REDIS_URL": "redis://h/0"}), env={}), RedisBudget)
