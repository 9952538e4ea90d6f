"""A worker killed in the middle of a task: the message is delivered again and the order settles once."""

from __future__ import annotations

import os
import signal

import pytest

from tests.support.poll import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(make_stack):
    # A short visibility timeout, so a message a dead worker held comes back within seconds.
    return make_stack(CELERY_VISIBILITY_TIMEOUT="4")


PAID_ONCE = [(None, "pending"), ("pending", "paid")]


def _children(pid: int) -> list[int]:
    """Child process ids, from /proc (the pool processes of a prefork worker)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.append(int(entry))
    return found


def _order_pay_queries(stack) -> int:
    return int(stack.stats()["calls"].get("OrderPayQuery", 0))


def test_a_worker_killed_mid_call_has_its_task_redelivered_to_a_new_worker(stack):
    # given a worker, and a bank that holds the next OrderPayQuery without answering
    worker = stack.start_worker("doomed", queues="callbacks", concurrency=1)
    stack.faults(fail_next=1, fail_next_action="hang", services=["OrderPayQuery"])
    order_no = stack.create_order("A", 320)
    pay_token = stack.pay(order_no)
    wait_for(lambda: _order_pay_queries(stack) >= 1, timeout=15, message="the worker to call the bank")
    # when the whole worker dies at once (SIGKILL: no shutdown, no acknowledgement)
    worker.kill()
    assert stack.status(order_no) == "pending"
    # and a new worker starts
    stack.start_worker("heir", queues="callbacks", concurrency=1)
    # then the message comes back after the visibility timeout and the order is paid exactly once
    stack.wait_status(order_no, "paid", timeout=40)
    assert [(e.from_status, e.to_status) for e in stack.events(order_no)] == PAID_ONCE
    assert _order_pay_queries(stack) >= 2
    token = stack.token(pay_token)
    assert token is not None
    assert token.state == "resolved"
    stack.stop_workers()


def test_a_pool_process_killed_mid_task_is_requeued_by_its_parent(stack):
    # given a running worker and a bank that holds the next OrderPayQuery
    worker = stack.start_worker("survivor", queues="callbacks", concurrency=1, pool="prefork")
    stack.faults(fail_next=1, fail_next_action="hang", services=["OrderPayQuery"])
    before = _order_pay_queries(stack)
    order_no = stack.create_order("C", 90)
    stack.pay(order_no)
    wait_for(lambda: _order_pay_queries(stack) > before, timeout=15, message="the pool to call the bank")
    # when only the pool process running the task is killed (an OOM kill), the parent stays up
    children = _children(worker.pid)
    assert children, "prefork pool has no child process"
    for child in children:
        os.kill(child, signal.SIGKILL)
    # then task_reject_on_worker_lost puts the message back at once and a fresh pool process settles it
    stack.wait_status(order_no, "paid", timeout=30)
    assert [(e.from_status, e.to_status) for e in stack.events(order_no)] == PAID_ONCE
    assert worker.alive()
    assert "signal 9" in worker.log()
