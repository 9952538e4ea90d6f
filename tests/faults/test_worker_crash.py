"""Scenario 1: a whole worker killed with SIGKILL mid-resolution, then a new worker.

The tasks were taken but never acknowledged (acks_late). On Redis the visibility timeout here is the
production default (3600 s), so it cannot be what brings them back: the dead worker's liveness key
expires and a live worker (the replacement) restores its messages (workers/recovery.py), ETA-held
retries included. On RabbitMQ the broker requeues a dead connection's messages at once. This stack
runs no beat and nobody runs `sweep run`, so that redelivery is the only way back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from tests.faults.conftest import Record
from tests.support import brokers, services
from tests.support.poll import wait_for
from tests.support.stack import ShopKeys, Stack

pytestmark = pytest.mark.faults

RECOVERY = 60.0  # seconds from the replacement's start to every token settled (issue 17, item 5)
CRASH_ENV = {
    "CELERY_VISIBILITY_TIMEOUT": "3600",  # production's: redelivery must not wait for it
    "RESOLVE_RETRY_BASE": "4",  # retry countdowns of 2-4 s: long enough to kill a worker holding them
    "RESOLVE_RETRY_CAP": "8",
}


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def bank(request: pytest.FixtureRequest, shop_keys: ShopKeys) -> Iterator[Stack]:
    """Sandbox, web and one worker (two slots) on the broker of the parameter; no beat."""
    url = services.create_database(services.ensure_default_postgres())
    try:
        with brokers.broker_for(request.param) as broker, \
                Stack(url, broker.url, workers=1, keys=shop_keys, broker_kind=broker.kind,
                      extra_env={**broker.env, **CRASH_ENV}) as stack:
            yield stack
    finally:
        services.drop_database(url)


def _settled_after_replacement(bank: Stack, orders: list[str]) -> float:
    """Start a new worker and wait for every order; seconds from its start to the last settlement."""
    started = time.monotonic()
    bank.start_worker()
    assert set(bank.wait_final(orders, timeout=RECOVERY).values()) == {"paid"}
    return time.monotonic() - started


def test_a_worker_killed_mid_bank_call_loses_nothing(bank: Stack, ledger: Record) -> None:
    # Given open orders and a bank that takes 1.5 s to answer OrderPayQuery (within the read timeout)
    orders = bank.create_orders(6, amount_twd=310)
    bank.set_faults(latency_ms=1500, services=["OrderPayQuery"])
    seen = bank.bank_calls_received("OrderPayQuery")

    # When the customers pay and the whole worker is killed while it waits for the bank
    for order_no in orders:
        bank.pay(order_no)
    wait_for(lambda: bank.bank_calls_received("OrderPayQuery") >= seen + 2, timeout=20,
             message="OrderPayQuery calls in flight")
    bank.kill_worker()
    assert set(bank.statuses(orders).values()) == {"pending"}  # killed before any reply arrived

    # Then a new worker picks the work up again within seconds and every payment settles, once
    bank.clear_faults()
    elapsed = _settled_after_replacement(bank, orders)
    assert elapsed < RECOVERY
    assert {bank.token_row(bank.pay_token_of(n)).state for n in orders} == {"resolved"}  # type: ignore[union-attr]
    ledger(bank, f"worker SIGKILL mid bank call ({bank.broker_kind})", dict.fromkeys(orders, "paid"))


def test_a_worker_killed_while_holding_retry_countdowns_loses_nothing(bank: Stack, ledger: Record) -> None:
    # Given paid orders whose first OrderPayQuery fails, so each token waits out a retry countdown
    orders = bank.create_orders(4, amount_twd=320)
    seen = bank.bank_calls_received("OrderPayQuery")
    bank.set_faults(fail_next=len(orders), fail_next_action="error", fail_next_status=503,
                    services=["OrderPayQuery"])
    for order_no in orders:
        bank.pay(order_no)
    wait_for(lambda: bank.bank_calls_received("OrderPayQuery") >= seen + len(orders), timeout=20,
             message="every first OrderPayQuery answered 503")

    # When the whole worker is killed while it holds those retries (ETA tasks, unacknowledged)
    bank.kill_worker()
    assert set(bank.statuses(orders).values()) == {"pending"}
    if bank.broker_kind == "redis":
        held = redis.Redis.from_url(bank.broker_url).hlen("unacked")
        assert held >= 1, "the killed worker held no retry: the scenario did not happen"

    # Then the replacement gets them back within seconds and every payment settles, once
    elapsed = _settled_after_replacement(bank, orders)
    assert elapsed < RECOVERY
    ledger(bank, f"worker SIGKILL holding retries ({bank.broker_kind})", dict.fromkeys(orders, "paid"))
