"""The sweep in a real worker against the sandbox: expiry, two sweeps sent at once, two passes at once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from functools import partial

import pytest
import requests
from sqlalchemy import select

from core.db import transaction
from core.models import Order
from core.services.sweep import run_sweep
from core.settings import load_settings
from core.sinopac.client import QPayClient
from tests.support.poll import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(make_stack):
    # Pending orders are due for a targeted check half a second after creation.
    s = make_stack(CHECK_SCHEDULE="0.5,30")
    s.start_worker("sweeper", queues="sweep", concurrency=2)
    return s


def _due(stack, order_no: str) -> bool:
    with transaction(stack.db_url) as s:
        due = s.scalar(select(Order.next_check_at).where(Order.order_no == order_no))
    return due is not None and due <= datetime.now(UTC)


def _new_runs(stack, before: int, count: int) -> list:
    wait_for(lambda: len(stack.sweep_runs()) >= before + count, timeout=30,
             message=f"{count} sweep run(s) to be recorded")
    return stack.sweep_runs()[before:]


def test_an_atm_order_the_bank_reports_overdue_becomes_expired(stack):
    # given a pending ATM order that the bank now reports overdue (unpaid past its ExpireDate)
    stack.faults()
    order_no = stack.create_order("A", 700)
    r = requests.post(f"{stack.sandbox_url}/sandbox/orders/{order_no}/expire", json={}, timeout=5)
    assert r.status_code == 200, r.text
    wait_for(lambda: _due(stack, order_no), timeout=5, message="the order to be due for a check")
    before = len(stack.sweep_runs())
    # when a sweep runs
    stack.enqueue_sweep()
    # then the targeted check expires it, and the pass records it
    stack.wait_status(order_no, "expired")
    assert [(e.to_status, e.source) for e in stack.events(order_no)][-1] == ("expired", "sweep")
    run = _new_runs(stack, before, 1)[0]
    assert (run.expired, run.errors) == (1, 0)


def test_two_sweeps_sent_at_once_run_one_pass_that_settles_each_order_exactly_once(stack):
    # given twelve paid orders whose callbacks the bank dropped, all due for a check, and a slowish bank
    stack.faults(drop_callback_rate=1.0, latency_ms=40)
    orders = [stack.create_order("A" if i % 2 else "C", 100 + i) for i in range(12)]
    for order_no in orders:
        stack.pay(order_no)
    wait_for(lambda: all(_due(stack, o) for o in orders), timeout=5, message="orders to be due")
    before = len(stack.sweep_runs())
    # when two sweeps are sent at the same time (two pool threads take them)
    stack.enqueue_sweep()
    stack.enqueue_sweep()
    wait_for(lambda: "sweep skipped: another pass is running" in stack.logs(), timeout=30,
             message="the second sweep to be skipped")
    [run] = _new_runs(stack, before, 1)
    # then one pass ran and paid every order, with one paid event each
    for order_no in orders:
        assert stack.status(order_no) == "paid"
        assert [e.to_status for e in stack.events(order_no)].count("paid") == 1
    assert (run.settled, run.errors) == (12, 0)
    assert len(stack.sweep_runs()) == before + 1


def test_two_passes_that_do_overlap_settle_each_order_exactly_once(stack):
    # given twelve paid orders due for a check, and a slowish bank
    stack.faults(drop_callback_rate=1.0, latency_ms=40)
    orders = [stack.create_order("A" if i % 2 else "C", 300 + i) for i in range(12)]
    for order_no in orders:
        stack.pay(order_no)
    wait_for(lambda: all(_due(stack, o) for o in orders), timeout=5, message="orders to be due")
    # when two passes run at once anyway (an operator's `sweep run` beside beat's, or a lock store
    # that does not answer): here two threads of the real sweep, one bank client each
    settings = load_settings({**stack.env, "SWEEP_CONCURRENCY": "4"})
    results = []

    def one_pass() -> None:
        with QPayClient(settings) as client:
            results.append(run_sweep(partial(transaction, stack.db_url), client, settings, lambda _: True))

    threads = [threading.Thread(target=one_pass) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    # then every order is paid once, and the two passes together settled twelve
    for order_no in orders:
        assert stack.status(order_no) == "paid"
        assert [e.to_status for e in stack.events(order_no)].count("paid") == 1
    assert sum(r.settled for r in results) == 12
    assert sum(r.errors for r in results) == 0
    # and the passes really overlapped
    first, second = sorted(stack.sweep_runs()[-2:], key=lambda r: r.started_at)
    assert second.started_at < first.finished_at
