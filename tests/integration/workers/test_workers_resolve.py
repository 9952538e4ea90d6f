"""A real worker resolving real callbacks from the sandbox bank, through retries when it fails."""

from __future__ import annotations

import itertools

import pytest

from tests.support.poll import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(make_stack):
    s = make_stack()
    s.start_worker("resolve", queues="callbacks")
    return s


def test_a_paid_order_is_settled_from_its_callback(stack):
    # given a pending ATM order
    stack.faults()
    order_no = stack.create_order("A", 500)
    # when the customer pays and the bank calls back
    pay_token = stack.pay(order_no)
    # then the worker asks the bank and the order is paid, once, from the callback
    stack.wait_status(order_no, "paid")
    moves = [(e.from_status, e.to_status, e.source) for e in stack.events(order_no)]
    assert moves == [(None, "pending", "api"), ("pending", "paid", "backend")]
    token = stack.token(pay_token)
    assert token is not None
    assert (token.state, token.order_no, token.attempts) == ("resolved", order_no, 1)
    calls = stack.bank_calls("OrderPayQuery", pay_token[:8])
    assert [c.outcome for c in calls] == ["ok"]


def test_a_bank_failing_three_times_is_retried_with_growing_gaps_until_it_answers(stack):
    # given a bank whose next three OrderPayQuery calls fail with 503
    stack.faults(fail_next=3, fail_next_action="error", fail_next_status=503, services=["OrderPayQuery"])
    order_no = stack.create_order("C", 180)
    # when the customer pays
    pay_token = stack.pay(order_no)
    # then the order is paid after three transient failures
    stack.wait_status(order_no, "paid")
    calls = stack.bank_calls("OrderPayQuery", pay_token[:8])
    assert [c.outcome for c in calls] == ["transport_error"] * 3 + ["ok"]
    # and the gaps between attempts grew: retry n waits between half and all of 0.2 * 2**n seconds
    starts = [c.started_at for c in calls]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert gaps[0] >= 0.1
    assert gaps[1] >= 0.2
    assert gaps[2] >= 0.4
    assert gaps[2] > gaps[0]
    token = stack.token(pay_token)
    assert token is not None
    assert (token.state, token.attempts) == ("resolved", 4)


def test_resolving_the_same_token_again_changes_nothing(stack):
    # given a settled order
    stack.faults()
    order_no = stack.create_order("A", 250)
    pay_token = stack.pay(order_no)
    stack.wait_status(order_no, "paid")
    token = stack.token(pay_token)
    assert token is not None
    calls_before = len(stack.bank_calls("OrderPayQuery", pay_token[:8]))
    # when its task is delivered twice more
    stack.enqueue_resolve(token.id)
    stack.enqueue_resolve(token.id)
    # then (once the worker has run both) nothing moved and the bank was not asked again
    done = f"token {token.id} resolved: noop"
    wait_for(lambda: stack.logs().count(done) >= 2, timeout=15, message="both deliveries to run")
    assert len(stack.events(order_no)) == 2
    assert len(stack.bank_calls("OrderPayQuery", pay_token[:8])) == calls_before
