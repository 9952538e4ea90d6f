"""The bank budget is one budget for every process: real processes, a real Redis."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator

import pytest

from core.budget import RedisBudget
from tests.support.services import TempRedis

RATE = 20.0
PROCESSES = 3
EACH = 10


@pytest.fixture
def redis_url() -> Iterator[str]:
    with TempRedis() as server:
        yield server.url


def _spend(url: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    budget = RedisBudget.from_url(url, RATE)
    for _ in range(EACH):
        budget.acquire()
        out.put(time.time())


def test_processes_share_one_budget_of_requests_per_second(redis_url: str) -> None:
    # given three processes that each want to send ten requests at once
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_spend, args=(redis_url, out)) for _ in range(PROCESSES)]
    for proc in procs:
        proc.start()
    stamps = sorted(out.get(timeout=30) for _ in range(PROCESSES * EACH))
    for proc in procs:
        proc.join(10)

    # then together they never exceed the rate: 30 requests at 20/s take at least 1.45 s, and no
    # one-second window holds more than 20 (+1 for the window's edge)
    assert stamps[-1] - stamps[0] >= (PROCESSES * EACH - 1) / RATE - 0.05
    most = max(sum(1 for t in stamps if start <= t < start + 1.0) for start in stamps)
    assert most <= RATE + 1
