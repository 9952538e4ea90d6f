"""run_sweep against SQLite and a fake bank: what each step does, counts and records."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlalchemy import select

import core.services.sweep as sweep_module
from core.models import Order, OrderEvent, PayToken, SweepRun
from core.services.sweep import run_sweep
from core.settings import load_settings
from core.sinopac.messages import OrderQueryRequest
from core.sinopac.types import OrderQueryResult
from tests.unit.workers.conftest import NOW, FakeBank, add_order, add_token, row, status_of


def _runs(uow) -> list[SweepRun]:
    with uow() as s:
        return list(s.scalars(select(SweepRun).order_by(SweepRun.id)))


def test_unresolved_tokens_past_grace_are_enqueued_and_marked(uow, settings):
    # given one token past the grace period, one fresh, one resolved
    stale = add_token(uow, "a" * 64, received=NOW - timedelta(minutes=10))
    add_token(uow, "b" * 64, received=NOW - timedelta(seconds=30))
    add_token(uow, "c" * 64, received=NOW - timedelta(minutes=10), state="resolved")
    sent: list[int] = []

    def enqueue(token_id: int) -> bool:
        sent.append(token_id)
        return True

    # when
    counts = run_sweep(uow, FakeBank(), settings, enqueue, now=NOW)
    # then only the stale one is sent, and marked so the next pass waits another grace period
    assert sent == [stale]
    assert counts.requeued == 1
    with uow() as s:
        assert s.get(PayToken, stale).last_enqueued_at == NOW
    assert run_sweep(uow, FakeBank(), settings, enqueue, now=NOW + timedelta(seconds=60)).requeued == 0


def test_a_broker_that_refuses_counts_one_error_marks_nothing_and_stops_the_batch(uow, settings):
    # given two stale tokens and a broker that is down: enqueue answers False (the Enqueue contract)
    first = add_token(uow, "d" * 64, received=NOW - timedelta(minutes=10))
    second = add_token(uow, "e" * 64, received=NOW - timedelta(minutes=10))
    tried: list[int] = []

    def down(token_id: int) -> bool:
        tried.append(token_id)
        return False

    # when
    counts = run_sweep(uow, FakeBank(), settings, down, now=NOW)
    # then one error, no token marked (both stay due for the next pass), the rest of the batch not tried
    assert (counts.requeued, counts.errors) == (0, 1)
    assert "enqueue failed: broker unreachable" in counts.notes
    assert len(tried) == 1
    with uow() as s:
        assert s.get(PayToken, first).last_enqueued_at is None
        assert s.get(PayToken, second).last_enqueued_at is None


def test_an_enqueue_that_raises_against_the_contract_still_does_not_end_the_pass(uow, settings):
    token = add_token(uow, "d" * 64, received=NOW - timedelta(minutes=10))

    def broken(_: int) -> bool:
        raise ConnectionError("broker down")

    counts = run_sweep(uow, FakeBank(), settings, broken, now=NOW)
    assert (counts.requeued, counts.errors) == (0, 1)
    assert "enqueue failed: ConnectionError" in counts.notes
    with uow() as s:
        assert s.get(PayToken, token).last_enqueued_at is None
    assert _runs(uow)[-1].errors == 1  # the pass went on and was recorded


def test_bulk_settles_pending_orders_the_bank_reports_paid(uow, settings):
    # given two pending orders, one paid at the bank (its callback was lost), one not
    add_order(uow, "P1")
    add_order(uow, "P2")
    bank = FakeBank(rows=[row("P1")])
    # when
    counts = run_sweep(uow, bank, settings, lambda _: True, now=NOW)
    # then
    assert status_of(uow, "P1") == "paid"
    assert status_of(uow, "P2") == "pending"
    assert (counts.found, counts.settled, counts.errors) == (1, 1, 0)
    with uow() as s:
        event = s.scalars(select(OrderEvent).where(OrderEvent.order_no == "P1")).one()
    assert (event.source, event.to_status) == ("sweep", "paid")


def test_first_window_looks_back_one_day_then_follows_the_last_end_minus_overlap(uow, settings):
    bank = FakeBank()
    run_sweep(uow, bank, settings, lambda _: True, now=NOW)
    later = NOW + timedelta(minutes=5)
    run_sweep(uow, bank, settings, lambda _: True, now=later)
    first, second = bank.calls
    assert (first.pay_from, first.pay_to, first.pay_flag) == (NOW - timedelta(days=1), NOW, "Y")
    assert (second.pay_from, second.pay_to) == (NOW - timedelta(seconds=600), later)
    assert [r.window_end for r in _runs(uow)] == [NOW, later]


def test_a_full_page_splits_the_window_until_every_order_is_read(uow, settings, monkeypatch):
    # given 7 paid orders spread over the day and a bank that returns at most 3 rows per query
    for i in range(7):
        add_order(uow, f"S{i}")
    rows = [row(f"S{i}", pay_date=NOW - timedelta(hours=3 * i + 1)) for i in range(7)]
    bank = FakeBank(rows=rows, max_rows=3)
    monkeypatch.setattr(sweep_module, "BANK_MAX_ROWS", 3)
    counts = run_sweep(uow, bank, settings, lambda _: True, now=NOW)
    # then all seven are settled, and the window was split (more than one query)
    assert counts.settled == 7
    assert counts.found == 7
    assert len(bank.calls) > 3
    assert all(status_of(uow, f"S{i}") == "paid" for i in range(7))


def test_a_full_one_minute_window_is_noted_not_split_forever(uow, settings, monkeypatch):
    for i in range(4):
        add_order(uow, f"M{i}")
    minute = NOW - timedelta(minutes=20)
    bank = FakeBank(rows=[row(f"M{i}", pay_date=minute) for i in range(4)], max_rows=3)
    monkeypatch.setattr(sweep_module, "BANK_MAX_ROWS", 3)
    counts = run_sweep(uow, bank, settings, lambda _: True, now=NOW)
    assert counts.settled == 3
    assert len(bank.calls) < 40
    assert "one-minute window" in (_runs(uow)[0].detail or "")


def test_targeted_check_expires_an_unpaid_atm_order_past_its_expiry(uow, settings):
    # given an ATM order due for a check whose stored expiry passed; the bank says unpaid (1A200)
    add_order(uow, "E1", next_check_at=NOW - timedelta(minutes=1), expires_at=NOW - timedelta(hours=1))
    bank = FakeBank(rows=[row("E1", pay_status="1A200", pay_date=None, expire_date="")])
    # when
    counts = run_sweep(uow, bank, settings, lambda _: True, now=NOW)
    # then
    assert status_of(uow, "E1") == "expired"
    assert counts.expired == 1


def test_targeted_check_leaves_an_unpaid_order_pending_with_a_later_check(uow, settings):
    add_order(uow, "U1", next_check_at=NOW - timedelta(minutes=1))
    bank = FakeBank(rows=[row("U1", pay_status="1A200", pay_date=None)])
    counts = run_sweep(uow, bank, settings, lambda _: True, now=NOW)
    assert status_of(uow, "U1") == "pending"
    assert counts.still_pending == 1
    # and it is not claimed again by an immediate second pass
    again = run_sweep(uow, bank, settings, lambda _: True, now=NOW + timedelta(seconds=1))
    assert again.still_pending == 0


def test_a_bank_outage_counts_errors_keeps_the_window_open_and_never_raises(uow, settings):
    # given due orders and a bank that times out on every call
    for i in range(5):
        add_order(uow, f"D{i}", next_check_at=NOW - timedelta(minutes=1))
    bank = FakeBank(down=True)
    # when
    counts = run_sweep(uow, bank, settings, lambda _: True, now=NOW)
    # then the pass finished, counted errors, and stopped hammering the bank after a few failures
    assert counts.errors >= 2
    assert len(bank.calls) <= 1 + 3
    run = _runs(uow)[0]
    assert (run.window_end, run.errors) == (None, counts.errors)
    assert all(status_of(uow, f"D{i}") == "pending" for i in range(5))
    # and when the bank is back, the next bulk window starts where the last complete one did (a day back)
    bank.down = False
    bank.calls.clear()
    run_sweep(uow, bank, settings, lambda _: True, now=NOW + timedelta(minutes=5))
    assert bank.calls[0].pay_from == NOW + timedelta(minutes=5) - timedelta(days=1)


def test_the_counts_are_recorded_as_a_sweep_run(uow, settings):
    add_order(uow, "R1")
    add_token(uow, "e" * 64, received=NOW - timedelta(minutes=10))
    counts = run_sweep(uow, FakeBank(rows=[row("R1")]), settings, lambda _: True, now=NOW)
    run = _runs(uow)[0]
    assert (run.requeued, run.found, run.settled, run.expired, run.still_pending, run.errors) == (
        1, 1, 1, 0, 0, 0)
    assert counts.as_dict() == {"requeued": 1, "found": 1, "settled": 1, "expired": 0, "still_pending": 0,
                                "errors": 0, "events_relayed": 0}
    assert run.finished_at is not None


def test_bulk_sends_a_late_payment_for_an_expired_order_to_review(uow, settings, caplog):
    # given an order we expired, paid at the bank afterwards (an ATM transfer posted late)
    add_order(uow, "LATE1", status="expired")
    # when the bulk step finds it paid
    with caplog.at_level("ERROR"):
        counts = run_sweep(uow, FakeBank(rows=[row("LATE1")]), settings, lambda _: True, now=NOW)
    # then the money is not dropped: needs_review with the reason, and an ALERT
    assert status_of(uow, "LATE1") == "needs_review"
    assert counts.settled == 1
    with uow() as s:
        assert s.scalars(select(OrderEvent.detail).where(OrderEvent.order_no == "LATE1")).one() == \
            "paid after expiry"
    assert any("ALERT" in r.getMessage() and "paid after expiry" in r.getMessage() for r in caplog.records)


def test_targeted_sends_a_payment_for_an_order_failed_meanwhile_to_review(uow, settings, db_url):
    # given a pending card order due for a check, which a callback marks failed while the sweep asks
    add_order(uow, "RACE1", pay_type="C", next_check_at=NOW - timedelta(minutes=1))

    class FailsMeanwhile(FakeBank):
        def query_orders(self, request: OrderQueryRequest) -> OrderQueryResult:
            if request.order_no == "RACE1":
                with uow() as s:
                    s.query(Order).filter_by(order_no="RACE1").update({"status": "failed"})
            return super().query_orders(request)

    bank = FailsMeanwhile(rows=[row("RACE1", pay_type="C", pay_status="1C400", pay_date=None)])
    # when the targeted step learns it was paid
    run_sweep(uow, bank, settings, lambda _: True, now=NOW)
    # then it is not dropped: needs_review, paid after failure
    assert status_of(uow, "RACE1") == "needs_review"


def test_a_reply_the_parser_chokes_on_never_ends_the_pass(uow, settings):
    # given a bank whose window query fails in a way nobody planned, and a pending order due
    add_order(uow, "T1", next_check_at=NOW - timedelta(minutes=1))

    class Choking(FakeBank):
        def query_orders(self, request: OrderQueryRequest) -> OrderQueryResult:
            if not request.order_no:
                raise RecursionError("maximum recursion depth exceeded")
            return super().query_orders(request)

    bank = Choking(rows=[row("T1")])
    counts = run_sweep(uow, bank, settings, lambda _: True, now=NOW)
    # then the error is counted, the targeted step still ran, and the pass was recorded
    assert counts.errors == 1
    assert status_of(uow, "T1") == "paid"
    assert _runs(uow)[-1].errors == 1


class SlowBank(FakeBank):
    """OrderQuery that takes `delay` seconds and records how many calls were in flight at once."""

    def __init__(self, rows, delay: float) -> None:
        super().__init__(rows=rows)
        self.delay = delay
        self.in_flight = 0
        self.most = 0
        self.lock = threading.Lock()

    def query_orders(self, request: OrderQueryRequest) -> OrderQueryResult:
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        try:
            time.sleep(self.delay)
            return super().query_orders(request)
        finally:
            with self.lock:
                self.in_flight -= 1


def test_targeted_calls_run_concurrently_up_to_sweep_concurrency(uow, db_url):
    # given 40 due orders, half of them paid at the bank, and a bank answering in 200 ms (long enough
    # for a batch's threads to overlap on a loaded machine; how fast the pass is belongs to bench/sweep)
    settings = load_settings({"DATABASE_URL": db_url, "SWEEP_BATCH": "50", "SWEEP_CONCURRENCY": "8"})
    for i in range(40):
        add_order(uow, f"C{i:02d}", next_check_at=NOW - timedelta(minutes=1))
    bank = SlowBank([row(f"C{i:02d}", pay_date=None, pay_status="1A400" if i % 2 else "1A200")
                     for i in range(40)], delay=0.2)
    counts = run_sweep(uow, bank, settings, lambda _: True, now=NOW)
    # then every order was queried once, 8 at a time at the most (and at some moment 8 at once)
    assert len([c for c in bank.calls if c.order_no]) == 40
    assert bank.most == 8
    assert (counts.settled, counts.still_pending, counts.errors) == (20, 20, 0)
    assert sum(status_of(uow, f"C{i:02d}") == "paid" for i in range(40)) == 20


def test_a_bank_outage_in_the_targeted_step_stops_after_three_calls_whatever_the_concurrency(uow, db_url):
    settings = load_settings({"DATABASE_URL": db_url, "SWEEP_BATCH": "50", "SWEEP_CONCURRENCY": "16"})
    for i in range(20):
        add_order(uow, f"D{i:02d}", next_check_at=NOW - timedelta(minutes=1))
    bank = FakeBank(down=True)
    counts = run_sweep(uow, bank, settings, lambda _: True, now=NOW)
    assert len([c for c in bank.calls if c.order_no]) == 3
    assert "targeted: stopped after repeated transport errors" in (_runs(uow)[0].detail or "")
    assert counts.errors == 1 + 3  # the bulk window and three targeted calls
