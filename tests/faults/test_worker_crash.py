"""Scenario 1: a worker killed with SIGKILL while its bank calls are in flight, then a new worker.

The tasks were taken but never acknowledged (acks_late); after CELERY_VISIBILITY_TIMEOUT (6 s in the
Stack) Redis hands them out again, and the sweep re-enqueues tokens still unresolved after
SWEEP_GRACE. Either way every payment settles, and the repeated work changes nothing twice.
"""

from __future__ import annotations

import pytest

from tests.faults.conftest import Record
from tests.support.poll import wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.faults


def test_a_worker_killed_mid_bank_call_loses_nothing(bank: Stack, ledger: Record) -> None:
    # Given open orders and a bank that takes 1.5 s to answer OrderPayQuery (within the read timeout)
    orders = bank.create_orders(6, amount_twd=310)
    bank.set_faults(latency_ms=1500, services=["OrderPayQuery"])
    seen = bank.bank_calls_received("OrderPayQuery")

    # When the customers pay and the worker is killed while it waits for the bank
    for order_no in orders:
        bank.pay(order_no)
    wait_for(lambda: bank.bank_calls_received("OrderPayQuery") >= seen + 2, timeout=20,
             message="OrderPayQuery calls in flight")
    bank.kill_worker()
    assert set(bank.statuses(orders).values()) == {"pending"}  # killed before any reply arrived

    # Then a new worker picks the work up again and every payment settles, each exactly once
    bank.clear_faults()
    bank.start_worker()
    assert set(bank.wait_final(orders, timeout=60).values()) == {"paid"}
    ledger(bank, "worker SIGKILL mid bank call", dict.fromkeys(orders, "paid"))
