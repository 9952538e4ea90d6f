"""Scenario 5: the same payment reported many times, by several paths, at the same moment, or late.
Whatever the interleaving, one PayToken row, one order change, one event."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.faults.conftest import Record
from tests.support.poll import wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.faults


def paid_silently(stack: Stack, count: int, amount: int) -> dict[str, str]:
    """Orders paid at the bank whose BackendURL push the bank drops (until the test ends)."""
    orders = stack.create_orders(count, amount_twd=amount)
    stack.set_faults(drop_callback_rate=1.0)
    return {n: stack.pay(n) for n in orders}


def acknowledged(resp: requests.Response) -> bool:
    return resp.status_code == 200 and resp.json() == {"Status": "S"}


def test_one_pay_token_delivered_50_times_at_once_settles_once(bank: Stack, ledger: Record) -> None:
    # Given two payments the bank has not announced yet
    tokens = paid_silently(bank, 2, amount=510)

    # When each PayToken arrives 50 times concurrently
    deliveries = [t for t in tokens.values() for _ in range(50)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(bank.callback, deliveries))

    # Then every delivery is acknowledged, each token is one row with 50 receipts, each order paid once
    assert all(acknowledged(a) for a in answers), {a.status_code for a in answers}
    bank.wait_final(tokens, timeout=30)
    for token in tokens.values():
        row = bank.token_row(token)
        assert row is not None
        assert row.receipts == 50, row
    ledger(bank, "same PayToken x50 concurrently", dict.fromkeys(tokens, "paid"))


def test_callback_and_return_at_the_same_moment_settle_once(bank: Stack, ledger: Record) -> None:
    # Given five payments the bank has not announced yet
    tokens = paid_silently(bank, 5, amount=520)

    # When, for each, the bank's push and the customer's browser arrive at the same moment
    answers: list[tuple[str, int]] = []

    def race(token: str) -> None:
        start = threading.Barrier(2)

        def push() -> None:
            start.wait()
            answers.append(("backend", bank.callback(token).status_code))

        def browser() -> None:
            start.wait()
            answers.append(("return", bank.browser_return(token).status_code))

        threads = [threading.Thread(target=push), threading.Thread(target=browser)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)

    for token in tokens.values():
        race(token)

    # Then both were answered, each token is one row, and each order changed once
    assert len(answers) == 10
    assert all(code == 200 for path, code in answers if path == "backend"), answers
    assert all(code < 400 for path, code in answers if path == "return"), answers
    bank.wait_final(tokens, timeout=30)
    for token in tokens.values():
        row = bank.token_row(token)
        assert row is not None
        assert row.receipts == 2, row
    ledger(bank, "callback + ReturnURL at once", dict.fromkeys(tokens, "paid"))


def test_a_callback_after_the_sweep_settled_changes_nothing(bank: Stack, ledger: Record) -> None:
    # Given payments the bank never announced, which the sweep found and settled
    tokens = paid_silently(bank, 3, amount=530)
    bank.wait_final(tokens, timeout=45)
    assert all(e.source == "sweep" for n in tokens for e in bank.events(n) if e.from_status), \
        {n: bank.events(n) for n in tokens}

    # When the bank's callbacks arrive late
    answers = [bank.callback(t) for t in tokens.values()]

    # Then they are acknowledged, resolved as no-ops, and the orders keep their single change
    assert all(acknowledged(a) for a in answers)
    wait_for(lambda: all(bank.token_row(t).state == "resolved" for t in tokens.values()),  # type: ignore[union-attr]
             timeout=30, message="late tokens resolved")
    ledger(bank, "callback after the sweep settled", dict.fromkeys(tokens, "paid"))
