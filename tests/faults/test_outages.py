"""Scenarios 2 and 3: the broker (Redis, then RabbitMQ), then the database, stopped while the bank's
callbacks arrive.

These stop services, so they run on a private PostgreSQL (initdb into a temporary folder) and a private
Redis, each on a spare port; RabbitMQ is cut off behind a proxy (tests/support/brokers.py). The bank
resends an unacknowledged callback every 2 s here, 5 sends in
all (the real bank: every 10 minutes), so the database must be back within ~8 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.faults.conftest import Record
from tests.support import brokers, services
from tests.support.poll import wait_for
from tests.support.stack import ShopKeys, Stack

pytestmark = pytest.mark.faults

BROKER_OUTAGE = 30.0  # seconds, as the issue asks


Outage = tuple[Stack, services.TempPostgres, services.TempRedis]


@pytest.fixture(scope="module")
def outage(shop_keys: ShopKeys) -> Iterator[Outage]:
    with services.TempPostgres() as pg, services.TempRedis() as broker:
        url = services.create_database(pg.admin_url)
        with Stack(url, broker.url, workers=1, beat=True, resend_interval=2.0, keys=shop_keys) as stack:
            yield stack, pg, broker


@pytest.fixture(scope="module")
def rabbit_outage(shop_keys: ShopKeys) -> Iterator[tuple[Stack, brokers.Broker]]:
    """The same stack on RabbitMQ (a vhost of its own) behind a proxy the test cuts: the machine's
    RabbitMQ itself is never stopped."""
    url = services.create_database(services.ensure_default_postgres())
    try:
        with brokers.broker_for("rabbitmq", cuttable=True) as broker, \
                Stack(url, broker.url, workers=1, beat=True, resend_interval=2.0, keys=shop_keys,
                      broker_kind=broker.kind, extra_env=broker.env) as stack:
            yield stack, broker
    finally:
        services.drop_database(url)


def _broker_down_for_30s(stack: Stack, stop: Callable[[], None], start: Callable[[], None],
                         ledger: Record, scenario: str) -> None:
    # Given open orders and a broker that is down
    orders = stack.create_orders(10, amount_twd=210)
    stop()
    down_since = time.monotonic()

    # When the customers pay during the outage
    for order_no in orders:
        stack.pay(order_no)

    # Then the receiver still acknowledges every callback (the PayToken row is durable)
    wait_for(lambda: all(any(a["acknowledged"] for a in stack.callback_attempts(n)) for n in orders),
             timeout=20, message="callbacks acknowledged with the broker down")
    assert all(stack.token_row(stack.pay_token_of(n)) is not None for n in orders)
    assert set(stack.statuses(orders).values()) == {"pending"}

    # ...and stays up for the whole outage
    wait_for(lambda: not stack.healthy() or time.monotonic() - down_since >= BROKER_OUTAGE,
             timeout=BROKER_OUTAGE + 5, interval=0.5, message="the outage to last its 30 s")
    assert stack.healthy()

    # And when the broker is back, the sweep re-enqueues the tokens and every payment settles once
    start()
    assert set(stack.wait_final(orders, timeout=60).values()) == {"paid"}
    tokens = [stack.pay_token_of(n) for n in orders]
    wait_for(lambda: all(stack.token_row(t).state == "resolved" for t in tokens),  # type: ignore[union-attr]
             timeout=30, message="every stored token resolved")
    assert stack._rows("SELECT coalesce(sum(requeued), 0) AS n FROM sweep_runs")[0].n >= len(orders)
    ledger(stack, scenario, dict.fromkeys(orders, "paid"))


def test_redis_down_for_30s_while_callbacks_arrive(outage: Outage, ledger: Record) -> None:
    stack, _pg, broker = outage
    _broker_down_for_30s(stack, broker.stop, broker.start, ledger, "Redis down 30 s")


def test_rabbitmq_down_for_30s_while_callbacks_arrive(rabbit_outage: tuple[Stack, brokers.Broker],
                                                      ledger: Record) -> None:
    stack, broker = rabbit_outage
    assert broker.proxy is not None
    _broker_down_for_30s(stack, broker.proxy.cut, broker.proxy.restore, ledger, "RabbitMQ down 30 s")


def test_postgres_down_while_callbacks_arrive(outage: Outage, ledger: Record) -> None:
    stack, pg, _broker = outage
    # Given open orders and a database that is down
    orders = stack.create_orders(10, amount_twd=220)
    pg.stop()

    # When the customers pay, the receiver cannot store the PayTokens
    for order_no in orders:
        stack.pay(order_no)

    # Then it answers 503 (so the bank will resend) and acknowledges nothing
    wait_for(lambda: all(stack.callback_attempts(n) for n in orders), timeout=10, message="first sends")
    first = [stack.callback_attempts(n)[0] for n in orders]
    assert all(a["http_status"] == 503 and not a["acknowledged"] for a in first), first

    # And when the database is back before the bank's sends run out, a resend is acknowledged
    pg.start()
    wait_for(lambda: all(any(a["acknowledged"] for a in stack.callback_attempts(n)) for n in orders),
             timeout=20, message="a resend acknowledged")
    assert set(stack.wait_final(orders, timeout=60).values()) == {"paid"}
    assert all(len(stack.callback_attempts(n)) <= 5 for n in orders)
    ledger(stack, "PostgreSQL down, bank resends", dict.fromkeys(orders, "paid"))
