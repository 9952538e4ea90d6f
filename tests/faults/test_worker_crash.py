"""Scenario 1: a worker killed with SIGKILL while its bank calls are in flight, then a new worker.

The tasks were taken but never acknowledged (acks_late); after CELERY_VISIBILITY_TIMEOUT (6 s in the
Stack) Redis hands them out again. This stack runs no beat, so that redelivery is the only way back:
the sweep (which would also find these payments) cannot hide a lost message.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.conftest import Record
from tests.support import services
from tests.support.poll import wait_for
from tests.support.stack import ShopKeys, Stack

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def bank(shop_keys: ShopKeys) -> Iterator[Stack]:
    """Sandbox, web and one worker (two processes); no beat."""
    url = services.create_database(services.ensure_default_postgres())
    try:
        with services.TempRedis() as broker, Stack(url, broker.url, workers=1, keys=shop_keys) as stack:
            yield stack
    finally:
        services.drop_database(url)


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
    assert {bank.token_row(bank.pay_token_of(n)).state for n in orders} == {"resolved"}  # type: ignore[union-attr]
    ledger(bank, "worker SIGKILL mid bank call", dict.fromkeys(orders, "paid"))
