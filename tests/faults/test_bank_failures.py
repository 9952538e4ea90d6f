"""Scenario 4: the bank fails every call for a while (5xx, hangs past the read timeout, replies cut in
half; HTML maintenance pages are tested in test_trust.py), then recovers. Nothing is applied from a
failed call, no token is called untrusted for what is only an outage (docs/architecture.md: transient
failures heal themselves), and every payment settles afterwards."""

from __future__ import annotations

import pytest

from tests.faults.conftest import Record
from tests.support.poll import wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.faults

FAILING = {"error_rate": 0.5, "hang_rate": 0.25, "hang_seconds": 3.0, "malformed_rate": 0.25,
           "error_statuses": [500, 502, 503], "seed": 8, "services": ["OrderPayQuery", "OrderQuery"]}


def test_payments_settle_after_the_bank_recovers(bank: Stack, ledger: Record) -> None:
    # Given twelve open orders and a bank that fails every query
    orders = bank.create_orders(12, amount_twd=410)
    before = bank.bank_call_outcomes()
    bank.set_faults(**FAILING)

    # When the customers pay and the workers keep failing to learn the result
    tokens = [bank.pay(n) for n in orders]

    def failures() -> dict[str, int]:
        now = bank.bank_call_outcomes()
        return {k: now.get(k, 0) - before.get(k, 0) for k in ("transport_error", "protocol_error")}

    wait_for(lambda: failures()["transport_error"] >= 12
             and all((r := bank.token_row(t)) is not None and r.attempts >= 1 for t in tokens),
             timeout=45, interval=0.25, message="the workers to meet the failing bank")

    # Then nothing was applied from a failed call, and a reply cut short is an outage, not a forgery
    assert set(bank.statuses(orders).values()) == {"pending"}
    assert failures()["protocol_error"] == 0
    assert not [t for t in tokens if bank.token_row(t).state == "untrusted"]  # type: ignore[union-attr]

    # And when the bank recovers, every payment settles, each exactly once
    bank.clear_faults()
    assert set(bank.wait_final(orders, timeout=60).values()) == {"paid"}
    ledger(bank, "bank failing, then recovering", dict.fromkeys(orders, "paid"))
