"""Scaling out: two worker processes on one queue, one PostgreSQL and one Redis (docs/operations.md, Scaling).

Both workers must take work from the shared `callbacks` queue, and every payment must still settle
exactly once: one pending -> paid move per order, one resolution per token.
"""

from __future__ import annotations

import pytest

from tests.support.services import TempRedis
from tests.support.stack import Stack, resolved_task_ids

pytestmark = pytest.mark.integration

ORDERS = 12


def test_two_workers_on_one_queue_both_consume_and_each_payment_settles_once(
    pg_url: str, redis_server: TempRedis
) -> None:
    # given web, the sandbox bank and TWO single-slot workers on the same database and broker; each
    # bank query takes 300 ms, so one worker cannot drain the queue alone
    with Stack(pg_url, redis_server.url, workers=2, worker_concurrency=1) as stack:
        stack.set_faults(latency_ms=300, services=["OrderPayQuery"])
        order_nos = [stack.create_order(500 + i, "A" if i % 2 else "C") for i in range(ORDERS)]

        # when every order is paid at the bank (each callback enqueues one resolve task)
        for order_no in order_nos:
            stack.pay(order_no)
        statuses = stack.wait_final(order_nos, timeout=90)

        # then every order is paid, by exactly one move, each token resolved once
        assert set(statuses.values()) == {"paid"}
        assert set(stack.transitions(order_nos).values()) == {1}
        tokens = stack.pay_tokens()
        assert len(tokens) == ORDERS
        assert {t.state for t in tokens} == {"resolved"}

        # and both workers took tasks from the shared queue, none of them twice
        logs = stack.logs()
        taken = {name: resolved_task_ids(log) for name, log in logs.items() if name.startswith("worker-")}
    assert len(taken) == 2
    assert all(taken.values()), f"a worker took no task: { {n: len(t) for n, t in taken.items()} }"
    every = [task for tasks in taken.values() for task in tasks]
    assert len(every) == len(set(every)) >= ORDERS
