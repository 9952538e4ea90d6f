"""Two shops in one deployment, and a key change with payments flowing, as real processes: the sandbox
bank over HTTP, the app under gunicorn, real Celery workers, PostgreSQL and Redis."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.support.poll import wait_for
from tests.support.procs import BIN
from tests.support.services import PROJECT_DIR, TempRedis
from tests.support.stack import ShopKeys, Stack

pytestmark = pytest.mark.integration


def _two_shops(pg_url: str, redis_url: str, second: dict[str, Any], **kw: Any) -> Stack:
    """Shop one through the single-shop variables (as every deployment so far), shop two in QPAY_SHOPS."""
    return Stack(pg_url, redis_url, extra_env={"QPAY_SHOPS": json.dumps([second])}, **kw)


def _rows(stack: Stack, sql: str, **params: Any) -> list[Any]:
    return stack._rows(sql, **params)


def _shop_of(stack: Stack, order_nos: list[str]) -> dict[str, str]:
    rows = _rows(stack, "SELECT order_no, shop_no FROM orders WHERE order_no = ANY(:nos)", nos=order_nos)
    return {r.order_no: r.shop_no for r in rows}


def _sandbox_outcomes(stack: Stack) -> dict[str, int]:
    return dict(stack.http.get(f"{stack.sandbox_url}/sandbox/stats", timeout=10).json()["outcomes"])


def _flask(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "flask"), "--app", "webhook", *args], env=stack.env, cwd=PROJECT_DIR,
                          capture_output=True, text=True, timeout=60, check=False)


def _assert_no_secret_logged(stack: Stack, *keys: ShopKeys) -> None:
    """Every key of every set of every shop is redacted from every process's log."""
    logs = stack.logs()
    leaks = [(proc, name) for key in keys for name, value in key.needles().items()
             for proc, text in logs.items() if value.lower() in text.lower()]
    assert leaks == []


def _pay_batch(stack: Stack, shops: list[str], per_shop: int, amount: int) -> list[str]:
    """Orders of every shop created and paid interleaved (one, two, one, two, ...)."""
    orders = [stack.create_order(amount + i, shop_no=shop) for i in range(per_shop) for shop in shops]
    for order_no in orders:
        stack.pay(order_no)
    return orders


def test_two_shops_interleaved_each_resolved_with_its_own_keys_and_one_shops_outage_is_its_own(
    pg_url: str, redis_server: TempRedis
) -> None:
    two = ShopKeys.random()
    with _two_shops(pg_url, redis_server.url, {**two.shop_json(), "name": "Outlet"}, beat=True) as stack:
        one = stack.keys
        shops = [one.shop_no, two.shop_no]

        # Interleaved payments of both shops settle, each order in its own shop.
        first = _pay_batch(stack, shops, per_shop=3, amount=400)
        assert set(stack.wait_final(first, timeout=90).values()) == {"paid"}
        assert _shop_of(stack, first) == {no: shops[i % 2] for i, no in enumerate(first)}
        # Every OrderPayQuery was made, and verified, with the keys of the token's shop: the sandbox
        # takes a shop's requests only under that shop's X-KeyID and signs replies with its keys.
        calls = _rows(stack, "SELECT shop_no, key_set, outcome FROM bank_calls "
                             "WHERE api_service = 'OrderPayQuery'")
        assert {(c.shop_no, c.key_set, c.outcome) for c in calls} == {(s, "active", "ok") for s in shops}
        tokens = _rows(stack, "SELECT t.shop_no AS token_shop, o.shop_no AS order_shop FROM pay_tokens t "
                              "JOIN orders o ON o.order_no = t.order_no")
        assert len(tokens) == len(first)
        assert all(t.token_shop == t.order_shop for t in tokens)

        # A callback naming a ShopNo this deployment does not serve is refused, and nothing is stored.
        refused = stack.callback("f" * 64, shop_no="NA0999_001")
        assert refused.status_code == 400
        assert stack.token_row("f" * 64) is None

        # Shop one's bank fails (every call, for a while); shop two's payments still settle.
        one_orders = [stack.create_order(600 + i, shop_no=one.shop_no) for i in range(2)]
        two_orders = [stack.create_order(700 + i, shop_no=two.shop_no) for i in range(2)]
        stack.set_faults(shops=[one.shop_no], error_rate=1.0, error_statuses=[503])
        for order_no in [*one_orders, *two_orders]:
            stack.pay(order_no)
        assert set(stack.wait_final(two_orders, timeout=60).values()) == {"paid"}
        assert set(stack.statuses(one_orders).values()) == {"pending"}

        # The bank recovers: shop one's payments settle too (retries, then the sweep), none twice.
        stack.clear_faults()
        assert set(stack.wait_final(one_orders, timeout=90).values()) == {"paid"}
        everything = [*first, *one_orders, *two_orders]
        assert set(stack.transitions(everything).values()) == {1}
        assert not [t for t in stack.pay_tokens() if t.state == "untrusted"]
        # The sweep reconciles every shop (a pass records each shop as it ends; on a loaded machine the
        # pass under way may not have reached the second shop yet).
        wait_for(lambda: {s.shop_no for s in _rows(stack, "SELECT DISTINCT shop_no FROM sweep_runs")}
                 == set(shops), timeout=60, message="a sweep pass recorded for each shop")
        _assert_no_secret_logged(stack, one, two)


@pytest.fixture
def runbook_stack(pg_url: str, redis_server: TempRedis) -> Iterator[tuple[Stack, ShopKeys]]:
    two = ShopKeys.random()
    with _two_shops(pg_url, redis_server.url, two.shop_json(), beat=False) as stack:
        yield stack, two


def _check_keys(stack: Stack) -> str:
    out = _flask(stack, "shops", "check")
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_the_key_change_runbook_with_payments_flowing_at_each_step(
    runbook_stack: tuple[Stack, ShopKeys]
) -> None:
    stack, old = runbook_stack
    new = old.with_new_keys()
    shops = [stack.keys.shop_no, old.shop_no]
    paid: list[str] = []

    def flowing(step: str) -> None:
        orders = _pay_batch(stack, shops, per_shop=2, amount=100 + 10 * len(paid))
        statuses = stack.wait_final(orders, timeout=60)
        assert set(statuses.values()) == {"paid"}, (step, statuses)
        paid.extend(orders)

    flowing("0: before")

    # 1. Add the new keys as `next`; deploy. The bank does not know them yet.
    stack.redeploy(QPAY_SHOPS=json.dumps([old.shop_json(next_keys=new)]))
    listing = _flask(stack, "shops").stdout
    assert "next" in listing
    assert not [v for v in (*new.hash_keys, new.key_id, new.hash_id) if v in listing]
    report = _check_keys(stack)
    assert "active" in report
    assert "refused" in report  # the bank does not take the next set yet
    asked = _sandbox_outcomes(stack).get("envelope_error", 0)
    assert asked == 1  # that one refusal was `shops check` asking, on purpose
    flowing("1: next keys deployed")

    # 2. Change the keys at the bank: it now signs replies with the new set and still takes the old.
    change = stack.http.post(f"{stack.sandbox_url}/sandbox/shops/{old.shop_no}/keys", json=new.keys_json(),
                             timeout=10)
    assert change.status_code == 200, change.text
    assert "refused" not in _check_keys(stack)
    flowing("2: changed at the bank")
    switched = _rows(stack, "SELECT count(*) AS n FROM bank_calls WHERE shop_no = :s AND key_set = 'next'",
                     s=old.shop_no)
    assert switched[0].n > 0  # replies verified with the next set, recorded as such

    # 3. Make the new keys active (the old ones next); deploy.
    stack.redeploy(QPAY_SHOPS=json.dumps([new.shop_json(next_keys=old)]))
    flowing("3: new keys active")

    # 4. Remove the old keys, at the bank and here; deploy.
    assert stack.http.post(f"{stack.sandbox_url}/sandbox/shops/{old.shop_no}/keys/retire",
                           timeout=10).status_code == 200
    stack.redeploy(QPAY_SHOPS=json.dumps([new.shop_json()]))
    assert "refused" not in _check_keys(stack)
    flowing("4: old keys removed")

    # Zero untrusted, zero lost, zero wrong; no payment waited for a retry; the bank refused nothing.
    tokens = stack.pay_tokens()
    assert len(tokens) == len(paid)
    assert {t.state for t in tokens} == {"resolved"}
    assert {t.attempts for t in tokens} == {1}
    assert set(stack.transitions(paid).values()) == {1}
    amounts = _rows(stack, "SELECT o.amount AS ours, e.amount AS bank FROM orders o JOIN order_events e "
                           "ON e.order_no = o.order_no AND e.shop_no = o.shop_no WHERE e.to_status = 'paid'")
    assert len(amounts) == len(paid)
    assert all(a.ours == a.bank for a in amounts)
    outcomes = _sandbox_outcomes(stack)
    assert outcomes.get("envelope_error", 0) == asked, outcomes  # no payment's call was ever refused
    assert outcomes.get("previous_keys", 0) > 0  # the bank really did see the old keys during the change
    calls = _rows(stack, "SELECT outcome FROM bank_calls WHERE key <> 'QPAYKEYCHECK'")  # not `shops check`'s
    assert {c.outcome for c in calls} == {"ok"}
    assert requests.get(f"{stack.web_url}/healthz", timeout=5).status_code == 200
    _assert_no_secret_logged(stack, stack.keys, old, new)


def test_a_bank_that_switches_keys_at_once_refuses_one_request_per_process_and_loses_nothing(
    pg_url: str, redis_server: TempRedis
) -> None:
    keys = ShopKeys.random()
    new = keys.with_new_keys()
    names = ("A1", "A2", "B1", "B2")
    next_env = {f"QPAY_NEXT_HASH_{n}": k for n, k in zip(names, new.hash_keys, strict=True)}
    with Stack(pg_url, redis_server.url, keys=keys, beat=False, worker_concurrency=2,
               extra_env={**next_env, "QPAY_NEXT_KEY_ID": new.key_id}) as stack:
        orders = [stack.create_order(300 + i) for i in range(6)]
        # The bank switches to the new keys and no longer takes the old ones at all.
        switched = stack.http.post(f"{stack.sandbox_url}/sandbox/shops/{keys.shop_no}/keys", timeout=10,
                                   json={**new.keys_json(), "keep_previous": False})
        assert switched.status_code == 200, switched.text
        for order_no in orders:
            stack.pay(order_no)
        assert set(stack.wait_final(orders, timeout=60).values()) == {"paid"}
        tokens = stack.pay_tokens()
        assert {(t.state, t.attempts) for t in tokens} == {("resolved", 1)}  # no retry, none untrusted
        refused = _sandbox_outcomes(stack).get("envelope_error", 0)
        assert 1 <= refused <= stack.worker_concurrency  # one per worker process that asked, at most
        _assert_no_secret_logged(stack, keys, new)
