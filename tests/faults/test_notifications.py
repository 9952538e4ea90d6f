"""Shop notifications under faults: the shop's endpoint down, Redis down, a worker killed mid-delivery,
an endpoint that hangs. The receiving end (scripts/shop.py) holds only the secret and verifies every
delivery with the independent `standardwebhooks` package.

One stack for the module (private Redis the tests stop, beat for the sweep's relay), with the issue's
retry settings SHOP_WEBHOOK_RETRY_BASE=1 and SHOP_WEBHOOK_RETRY_CAP=5. The endpoint outage lasts 60 s
as the issue's "Done when" says (NOTIFY_OUTAGE=<seconds> shortens it for a quick local run; the
shape, 503 for the first half and refused connections for the second, stays).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from core.variables import webhook_secret_values
from core.webhook_signing import new_secret
from scripts.shop import ShopEndpoint
from tests.support import services
from tests.support.poll import wait_for
from tests.support.stack import ShopKeys, Stack

pytestmark = pytest.mark.faults

OUTAGE = float(os.environ.get("NOTIFY_OUTAGE") or 60)


@dataclass
class Rig:
    stack: Stack
    shop: ShopEndpoint
    broker: services.TempRedis


@pytest.fixture(scope="module")
def rig(shop_keys: ShopKeys) -> Iterator[Rig]:
    url = services.create_database(services.ensure_default_postgres())
    shop = ShopEndpoint(new_secret()).start()
    env = {"SHOP_WEBHOOK_URL": shop.url, "SHOP_WEBHOOK_SECRET": shop.secret,
           "SHOP_WEBHOOK_RETRY_BASE": "1", "SHOP_WEBHOOK_RETRY_CAP": "5"}
    try:
        with services.TempRedis() as broker, Stack(url, broker.url, workers=1, beat=True, keys=shop_keys,
                                                   extra_env=env) as stack:
            yield Rig(stack, shop, broker)
    finally:
        shop.stop()
        services.drop_database(url)


@pytest.fixture
def shop(rig: Rig) -> Iterator[ShopEndpoint]:
    """The endpoint answering normally before and after each scenario."""
    rig.shop.mode = "ok"
    yield rig.shop
    rig.shop.mode = "ok"
    rig.shop.release()
    if rig.shop._server is None:
        rig.shop.start()


def all_delivered(rig: Rig, order_nos: list[str], timeout: float) -> list[object]:
    """Wait until every event of these orders is delivered (in the database and at the shop)."""
    def done() -> bool:
        rows = rig.stack.shop_events(order_nos)
        accepted = {d.webhook_id for d in rig.shop.accepted()}
        return bool(rows) and all(r.state == "delivered" and f"evt_{r.id}" in accepted for r in rows)

    wait_for(done, timeout=timeout, interval=0.25, message="every event delivered")
    return rig.stack.shop_events(order_nos)


def test_the_shop_endpoint_down_then_up_gets_every_event_with_the_same_id(
    rig: Rig, shop: ShopEndpoint
) -> None:
    stack = rig.stack
    # Given a shop endpoint that answers 503 for the first half of the outage...
    shop.mode = "503"
    began = time.monotonic()
    orders = stack.create_orders(4, amount_twd=910)
    for order_no in orders[:2]:
        stack.pay(order_no)
    wait_for(lambda: time.monotonic() - began >= OUTAGE / 2, timeout=OUTAGE, interval=0.5,
             message="the 503 half of the outage")
    # ...then refuses connections for the second half, while more orders change
    shop.stop()
    for order_no in orders[2:]:
        stack.pay(order_no)
    assert set(stack.wait_final(orders, timeout=60).values()) == {"paid"}  # payments do not wait
    wait_for(lambda: time.monotonic() - began >= OUTAGE, timeout=OUTAGE, interval=0.5,
             message="the refused half of the outage")
    assert all(r.state == "pending" for r in stack.shop_events(orders))
    refused_attempts = sum(1 for r in stack.shop_events(orders) for a in stack.delivery_attempts(r.id)
                           if a.http_status is None)
    assert refused_attempts > 0

    # When the endpoint is back
    shop.mode = "ok"
    shop.start()
    back = time.monotonic()

    # Then every event arrives (the backoff is capped at 5 s), verified, none lost
    rows = all_delivered(rig, orders, timeout=30)
    assert time.monotonic() - back < 30
    assert {r.type for r in rows} == {"order.pending", "order.paid"}
    assert len(rows) == 2 * len(orders)
    assert rig.shop.unverified() == []
    for row in rows:
        sends = [d for d in rig.shop.received() if d.webhook_id == f"evt_{row.id}"]
        # the same webhook-id and body on every attempt: 503s during the first half, then the delivery
        assert {d.body for d in sends} == {row.body.encode()}
        attempts = stack.delivery_attempts(row.id)
        assert attempts[-1].http_status == 200
        assert [a.attempt for a in attempts] == list(range(1, len(attempts) + 1))
    retried = [r for r in rows if len(stack.delivery_attempts(r.id)) > 1]
    assert len(retried) == len(rows)
    # and the order's events carry increasing ids for the shop to order them
    for order_no in orders:
        assert [e["type"] for e in rig.shop.events_of(order_no)] == ["order.pending", "order.paid"]


def test_redis_down_while_orders_change_is_relayed_by_the_sweep(rig: Rig, shop: ShopEndpoint) -> None:
    stack = rig.stack
    # Given a broker that is down while orders are created and paid
    rig.broker.stop()
    try:
        orders = stack.create_orders(3, amount_twd=920)
        for order_no in orders:
            stack.pay(order_no)
        wait_for(lambda: all(any(a["acknowledged"] for a in stack.callback_attempts(n)) for n in orders),
                 timeout=20, message="callbacks acknowledged with the broker down")
        assert {r.state for r in stack.shop_events(orders)} == {"pending"}
        assert all(not rig.shop.events_of(n) for n in orders)
    finally:
        rig.broker.start()
    relayed_before = stack._rows("SELECT coalesce(sum(events_relayed), 0) AS n FROM sweep_runs")[0].n

    # When Redis is back, the sweep relays the creation events and settles the payments
    assert set(stack.wait_final(orders, timeout=60).values()) == {"paid"}
    rows = all_delivered(rig, orders, timeout=60)

    # Then the shop has every event, and the sweep's relay sent the ones the web could not
    assert [r.type for r in rows].count("order.pending") == len(orders)
    relayed = stack._rows("SELECT coalesce(sum(events_relayed), 0) AS n FROM sweep_runs")[0].n
    assert relayed - relayed_before >= len(orders)
    assert rig.shop.unverified() == []


def test_a_worker_killed_mid_delivery_delivers_afterwards(rig: Rig, shop: ShopEndpoint) -> None:
    stack = rig.stack
    # Given an endpoint that takes the POST and does not answer yet
    shop.hang()
    order_no = stack.create_order(930, "A")
    wait_for(lambda: any(d.order_no == order_no for d in rig.shop.received()), timeout=10,
             message="the delivery in flight")
    [row] = stack.shop_events([order_no])

    # When the worker is killed mid-delivery, and a new one starts
    stack.kill_worker()
    shop.mode = "ok"
    shop.release()
    stack.start_worker()

    # Then the event is delivered afterwards, with the same id and body
    [done] = all_delivered(rig, [order_no], timeout=60)
    sends = [d for d in rig.shop.received() if d.webhook_id == f"evt_{row.id}"]
    assert len(sends) >= 2
    assert {d.body for d in sends} == {row.body.encode()}
    assert done.attempts >= 2


def test_a_hanging_endpoint_times_out_after_10s_and_is_retried(rig: Rig, shop: ShopEndpoint) -> None:
    stack = rig.stack
    # Given an endpoint that takes POSTs and never answers
    shop.hang()
    order_no = stack.create_order(940, "A")
    wait_for(lambda: any(d.order_no == order_no for d in rig.shop.received()), timeout=10,
             message="the first delivery in flight")
    [row] = stack.shop_events([order_no])

    # While it hangs, payments are still resolved at once (deliveries hold at most half the slots)
    paying = stack.create_order(941, "A")
    started = time.monotonic()
    stack.pay(paying)
    assert stack.wait_final([paying], timeout=20) == {paying: "paid"}
    assert time.monotonic() - started < 8

    # Then the attempt ends at the 10 s timeout and is recorded as such
    first = wait_for(lambda: stack.delivery_attempts(row.id), timeout=20,
                     message="the first attempt recorded")
    assert first[0].http_status is None
    assert first[0].error == "timeout after 10s"
    assert 9500 <= first[0].duration_ms < 13000

    # And when the endpoint answers again, the retry delivers the same event
    shop.mode = "ok"
    shop.release()
    all_delivered(rig, [order_no, paying], timeout=30)
    assert stack.delivery_attempts(row.id)[-1].http_status == 200


def test_the_webhook_secret_never_reaches_a_log(rig: Rig) -> None:
    logs = rig.stack.logs()
    for needle in webhook_secret_values(rig.shop.secret):
        leaks = [name for name, text in logs.items() if needle in text]
        assert leaks == [], f"SHOP_WEBHOOK_SECRET found in the logs of {leaks}"
    assert any("delivered" in text for text in logs.values())
