"""Scenario 8 (issue 13): classify every bank answer rightly, confirm before paying, never drop a
verified payment.

- A bank in maintenance (HTTP 500, then connections held and dropped, then a 200 HTML page) is an
  outage, not a forgery: no token is parked untrusted, no ALERT, every payment settles.
- A correctly signed OrderPayQuery reply that names another order paid does not pay that order: the
  bank's own OrderQuery is asked first, and its disagreement parks the order for review (ALERT).
- A verified payment for an order we already expired or failed is not dropped: needs_review, with
  the reason, listed by `orders stuck`.
"""

from __future__ import annotations

import subprocess

import pytest
from sqlalchemy import text

from tests.faults.conftest import Record
from tests.support.poll import wait_for
from tests.support.procs import BIN
from tests.support.services import PROJECT_DIR
from tests.support.stack import Stack

pytestmark = pytest.mark.faults


def _log_marks(stack: Stack) -> dict[str, int]:
    return {name: len(text) for name, text in stack.logs().items()}


def _new_log_lines(stack: Stack, marks: dict[str, int], needle: str) -> list[str]:
    return [line for name, text in stack.logs().items() for line in text[marks.get(name, 0):].splitlines()
            if needle in line]


def test_a_bank_in_maintenance_is_an_outage_not_a_forgery(bank: Stack, ledger: Record) -> None:
    # Given ten open orders, and a bank whose OrderPayQuery is down for maintenance in three ways
    orders = bank.create_orders(10, amount_twd=810)
    marks = _log_marks(bank)
    phases = [
        {"error_rate": 1.0, "error_statuses": [500]},  # HTTP 500
        {"hang_rate": 1.0, "hang_seconds": 1.0},  # connections held, then closed without a reply
        {"html_rate": 1.0},  # HTTP 200 with an HTML maintenance page
    ]
    tokens: list[str] = []
    for phase, batch in zip(phases, (orders[:3], orders[3:6], orders[6:]), strict=True):
        bank.set_faults(clear=True, services=["OrderPayQuery"], **phase)
        # When customers pay meanwhile and the workers meet this answer
        paid = [bank.pay(n) for n in batch]
        tokens += paid
        wait_for(lambda paid=paid: all((r := bank.token_row(t)) is not None and r.attempts >= 1
                                       for t in paid),
                 timeout=30, interval=0.2, message="the workers to meet the bank in maintenance")

    # Then no token was parked untrusted, none raised an ALERT: they wait as received, to be retried
    states = {bank.token_row(t).state for t in tokens}  # type: ignore[union-attr]
    assert "untrusted" not in states, states
    assert _new_log_lines(bank, marks, "ALERT") == []
    assert any("DOCTYPE" in (bank.token_row(t).last_error or "") for t in tokens[6:])  # type: ignore[union-attr]

    # And once the bank is back, every payment settles exactly once and every token is resolved
    bank.clear_faults()
    assert set(bank.wait_final(orders, timeout=60).values()) == {"paid"}
    wait_for(lambda: all(bank.token_row(t).state == "resolved" for t in tokens),  # type: ignore[union-attr]
             timeout=60, interval=0.5, message="every token resolved after the maintenance")
    ledger(bank, "bank in maintenance (500, hang, HTML)", dict.fromkeys(orders, "paid"))


def test_a_signed_reply_naming_another_order_does_not_pay_it(bank: Stack, ledger: Record) -> None:
    # Given two open orders, and a bank whose OrderPayQuery replies (correctly signed) name B as paid
    order_a, order_b = bank.create_orders(2, amount_twd=820)
    marks = _log_marks(bank)
    bank.set_faults(misdirect_order_no=order_b, services=["OrderPayQuery"])

    # When A's customer pays, and A's PayToken is resolved
    token = bank.pay(order_a)
    wait_for(lambda: bank.status(order_b) != "pending", timeout=30, interval=0.2,
             message="the misdirected reply to be judged")

    # Then B, still unpaid at the bank, is not paid: it waits for an operator, with an ALERT
    assert bank.status(order_b) == "needs_review"
    moves = [e for e in bank.events(order_b) if e.from_status]
    assert [(m.from_status, m.to_status) for m in moves] == [("pending", "needs_review")]
    assert "not confirmed" in (moves[0].detail or "")
    assert _new_log_lines(bank, marks, "ALERT")
    # And A, really paid, is settled by the bank's own OrderQuery (the sweep)
    bank.clear_faults()
    assert bank.wait_final([order_a], timeout=30) == {order_a: "paid"}
    assert bank.token_row(token) is not None
    ledger(bank, "signed reply naming another order", {order_a: "paid", order_b: "needs_review"})


def test_a_verified_payment_for_a_closed_order_goes_to_review(bank: Stack, ledger: Record) -> None:
    # Given an ATM order we expired and a card order we failed (the bank never heard of either change)
    expired = bank.create_order(830, "A")
    failed = bank.create_order(831, "C")
    with bank.db.begin() as conn:
        conn.execute(text("UPDATE orders SET status = 'expired', next_check_at = NULL WHERE order_no = :n"),
                     {"n": expired})
        conn.execute(text("UPDATE orders SET status = 'failed', next_check_at = NULL WHERE order_no = :n"),
                     {"n": failed})
    marks = _log_marks(bank)

    # When both are paid at the bank after all (an ATM transfer posted late, a card retried)
    bank.pay(expired)
    bank.pay(failed)

    # Then neither payment is dropped: each order needs review with the reason, once, with an ALERT
    wait_for(lambda: bank.statuses([expired, failed]) == {expired: "needs_review", failed: "needs_review"},
             timeout=30, interval=0.2, message="the late payments to reach review")
    assert [e.detail for e in bank.events(expired) if e.from_status] == ["paid after expiry"]
    assert [e.detail for e in bank.events(failed) if e.from_status] == ["paid after failure"]
    assert _new_log_lines(bank, marks, "ALERT")

    # And `orders stuck` lists them for the operator
    stuck = subprocess.run([str(BIN / "flask"), "--app", "webhook", "orders", "stuck"], env=bank.env,
                           cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60)
    assert stuck.returncode == 0, stuck.stderr
    for order_no, reason in ((expired, "paid after expiry"), (failed, "paid after failure")):
        assert any(order_no in line and reason in line for line in stuck.stdout.splitlines()), stuck.stdout
    ledger(bank, "paid after expiry / failure", {expired: "needs_review", failed: "needs_review"})
