"""Scenario 10 (issue 13, item 3): strangers do not decide how hard we ask the bank.

Anyone who knows the ShopNo can POST PayTokens. 5,000 forged ones arrive, then ten real payments. The
bank sees no more than QPAY_BANK_RATE requests per second (production's default, 10), however many
tokens wait; and the ten real payments are paid within one sweep interval, by the sweep's bulk
OrderQuery, whatever the token queue holds.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.faults.conftest import Record
from tests.support import services
from tests.support.stack import Stack

pytestmark = pytest.mark.faults

RATE = 10  # production's default QPAY_BANK_RATE
SWEEP_INTERVAL = 5.0
FORGED = 5_000
REAL = 10
# A sweep pass is sent every SWEEP_INTERVAL; this much more covers the pass itself (it waits for its
# share of the budget like everyone) and the poll.
PASS_MARGIN = 5.0


@pytest.fixture(scope="module")
def flooded(shop_keys) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    url = services.create_database(services.ensure_default_postgres())
    env = {"QPAY_BANK_RATE": str(RATE), "SWEEP_INTERVAL": str(SWEEP_INTERVAL), "SWEEP_GRACE": "30"}
    try:
        with services.TempRedis() as broker, Stack(url, broker.url, workers=1, beat=True, keys=shop_keys,
                                                   worker_concurrency=8, extra_env=env) as stack:
            yield stack
    finally:
        services.drop_database(url)


def _forge(stack: Stack, count: int) -> list[int]:
    local = threading.local()
    body = {"ShopNo": stack.keys.shop_no}

    def post(_: int) -> int:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        resp = session.post(f"{stack.web_url}/qpay/backend", timeout=30,
                            json={**body, "PayToken": secrets.token_hex(32)})
        return resp.status_code

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(post, range(count)))


def test_a_flood_of_forged_tokens_neither_exceeds_the_budget_nor_delays_real_payments(
    flooded: Stack, ledger: Record
) -> None:
    stack = flooded
    orders = stack.create_orders(REAL, amount_twd=930)
    t0, calls0 = time.monotonic(), stack.bank_calls_received()

    # Given 5,000 forged PayTokens, each acknowledged and queued
    answers = _forge(stack, FORGED)
    assert set(answers) == {200}, set(answers)

    # When ten customers really pay, their callbacks queued behind the forged ones
    for order_no in orders:
        stack.pay(order_no)
    paid_at = time.monotonic()

    # Then all ten are paid within a sweep interval (the bulk OrderQuery, not the token queue)
    statuses = stack.wait_final(orders, timeout=SWEEP_INTERVAL + PASS_MARGIN)
    settled_in = time.monotonic() - paid_at
    assert set(statuses.values()) == {"paid"}
    assert settled_in <= SWEEP_INTERVAL + PASS_MARGIN
    assert {e.source for n in orders for e in stack.events(n) if e.to_status == "paid"} == {"sweep"}

    # And the bank never saw more than the budget, flood or not
    elapsed, calls = time.monotonic() - t0, stack.bank_calls_received() - calls0
    print(f"flood: paid in {settled_in:.1f}s; {calls} bank requests in {elapsed:.1f}s")
    assert calls <= RATE * elapsed + 2, f"{calls} bank requests in {elapsed:.1f}s (budget {RATE}/s)"
    unresolved = stack._rows("SELECT count(*) AS n FROM pay_tokens WHERE state = 'received'")[0].n
    assert unresolved > FORGED / 2  # the forged queue was still there, and the payments did not wait for it
    ledger(stack, f"flood: {FORGED} forged tokens, {REAL} payments", dict.fromkeys(orders, "paid"))
