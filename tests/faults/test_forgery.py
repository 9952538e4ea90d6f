"""Scenario 6: only the bank's signed word changes an order (docs/architecture.md, guarantee 3).

Forged callbacks change nothing and crash nothing; a bank reply whose Sign does not verify is never
applied; an amount that differs from the stored order ends in needs_review. The mismatch is made by
rewriting the stored order's amount in the database before the customer pays (the bank keeps the
amount it was given at OrderCreate), which needs no special hook in the sandbox.
"""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.faults.conftest import Record
from tests.support.poll import wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.faults


def snapshot(stack: Stack) -> dict[str, tuple[str, int]]:
    """Every order's status and number of changes."""
    rows = stack._rows("SELECT order_no, status FROM orders")
    changes = stack.transitions(r.order_no for r in rows)
    return {r.order_no: (r.status, changes[r.order_no]) for r in rows}


def test_random_pay_tokens_change_no_order(bank: Stack, ledger: Record) -> None:
    # Given some open orders and the state of every order
    open_orders = bank.create_orders(3, amount_twd=610)
    before = snapshot(bank)
    forged = [secrets.token_hex(32) for _ in range(20)]

    # When twenty made-up PayTokens arrive with our ShopNo
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(bank.callback, forged))

    # Then each is recorded and acknowledged, the bank disowns it, and no order changed
    assert all(a.status_code == 200 for a in answers), {a.status_code for a in answers}
    wait_for(lambda: all(bank.token_row(t) is not None and bank.token_row(t).state == "rejected"  # type: ignore[union-attr]
                         for t in forged), timeout=30, message="forged tokens rejected")
    after = snapshot(bank)
    assert {n: after[n] for n in before} == before
    assert bank.healthy()
    ledger(bank, "forged: 20 random PayTokens", dict.fromkeys(open_orders, "pending"))


def test_a_real_token_presented_for_another_shop_is_refused(bank: Stack, ledger: Record) -> None:
    # Given a real payment, settled
    order_no = bank.create_order(620)
    bank.pay(order_no)
    bank.wait_final([order_no], timeout=30)
    token = bank.pay_token_of(order_no)
    receipts = bank.token_row(token).receipts  # type: ignore[union-attr]

    # When its PayToken arrives again under other ShopNos
    answers = [bank.callback(token, shop_no=shop) for shop in ("NA0001_001", "OTHER_001", "", "x" * 200)]

    # Then each is refused with a client error and nothing is recorded or changed
    assert all(400 <= a.status_code < 500 for a in answers), [a.status_code for a in answers]
    assert bank.token_row(token).receipts == receipts  # type: ignore[union-attr]
    assert bank.healthy()
    ledger(bank, "forged: real token, other shop", {order_no: "paid"})


def test_a_reply_with_a_wrong_sign_is_never_applied(bank: Stack, ledger: Record) -> None:
    # Given a bank whose every Order reply carries a Sign that does not verify
    orders = bank.create_orders(3, amount_twd=630)
    bank.set_faults(bad_sign_rate=1.0, services=["OrderPayQuery", "OrderQuery"])

    # When the customers pay and the callbacks are resolved against the lying replies
    tokens = [bank.pay(n) for n in orders]
    wait_for(lambda: all((row := bank.token_row(t)) is not None and row.last_error for t in tokens),
             timeout=30, message="tokens resolved against bad Signs")

    # Then no order moved (the tokens wait, with the error recorded)
    assert set(bank.statuses(orders).values()) == {"pending"}
    assert all("sign" in bank.token_row(t).last_error.lower() for t in tokens)  # type: ignore[union-attr]
    assert bank.bank_call_outcomes().get("protocol_error", 0) >= len(tokens)

    # And once the bank's replies verify again, the payments settle exactly once
    bank.clear_faults()
    bank.wait_final(orders, timeout=45)
    ledger(bank, "bank reply with wrong Sign", dict.fromkeys(orders, "paid"))


def test_an_amount_mismatch_ends_in_needs_review(bank: Stack, ledger: Record) -> None:
    # Given orders whose stored amount no longer matches what the bank was asked to collect
    orders = bank.create_orders(3, amount_twd=640)
    for order_no in orders:
        bank.set_amount(order_no, 1)

    # When the customers pay the bank's amount
    for order_no in orders:
        bank.pay(order_no)

    # Then no order is marked paid: each goes to needs_review, once, with the reason
    assert set(bank.wait_final(orders, timeout=30).values()) == {"needs_review"}
    for order_no in orders:
        moves = [e for e in bank.events(order_no) if e.from_status]
        assert "amount" in (moves[0].detail or "").lower(), moves
    ledger(bank, "amount mismatch", dict.fromkeys(orders, "needs_review"))
