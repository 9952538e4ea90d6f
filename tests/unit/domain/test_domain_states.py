"""The state machine: a table of moves, applied by one conditional UPDATE plus one event."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session

from core.models import Order
from core.services.orders import order_history
from core.services.settlement import OrderNotFound, transition
from core.services.transitions import Stored
from core.states import IllegalTransition, OrderStatus, Source, check_move

from .conftest import NOW


@pytest.mark.parametrize("target", ["paid", "failed", "expired", "needs_review"])
def test_pending_may_move_to_every_outcome(target: str) -> None:
    assert check_move("A001", OrderStatus.PENDING, OrderStatus(target), Source.SWEEP) is True


@pytest.mark.parametrize("final", ["paid", "failed", "expired"])
@pytest.mark.parametrize("target", ["pending", "paid", "failed", "expired", "needs_review"])
def test_final_states_never_move_except_closed_orders_to_review(final: str, target: str) -> None:
    if final in ("failed", "expired") and target == "needs_review":
        # a verified payment for a closed order: money an operator must look at (issue 13, item 4)
        assert check_move("A001", OrderStatus(final), OrderStatus(target), Source.SWEEP) is True
    elif final == target:
        assert check_move("A001", OrderStatus(final), OrderStatus(target), Source.OPERATOR) is False
    else:
        with pytest.raises(IllegalTransition):
            check_move("A001", OrderStatus(final), OrderStatus(target), Source.OPERATOR)


@pytest.mark.parametrize("target", ["paid", "failed"])
def test_needs_review_leaves_only_by_an_operator(target: str) -> None:
    with pytest.raises(IllegalTransition):
        check_move("A001", OrderStatus.NEEDS_REVIEW, OrderStatus(target), Source.SWEEP)
    assert check_move("A001", OrderStatus.NEEDS_REVIEW, OrderStatus(target), Source.OPERATOR) is True


def test_transition_moves_the_order_and_appends_one_event(
    session: Session, new_order: Callable[..., Order]
) -> None:
    order = new_order()

    moved = transition(session, order.order_no, "paid", source="backend", ts_no=order.ts_no, amount=50000,
                       now=NOW)

    assert moved is True
    assert order.status == "paid"
    assert order.paid_at == NOW
    assert order.next_check_at is None
    events = order_history(session, order.order_no)
    assert [(e.from_status, e.to_status, e.source) for e in events] == [
        (None, "pending", "api"), ("pending", "paid", "backend")
    ]
    assert events[-1].amount == 50000


def test_repeating_the_current_state_is_a_noop(session: Session, new_order: Callable[..., Order]) -> None:
    order = new_order()
    transition(session, order.order_no, "paid", source="sweep", now=NOW)

    again = transition(session, order.order_no, "paid", source="backend", now=NOW)

    assert again is False
    assert len(order_history(session, order.order_no)) == 2


def test_an_illegal_move_raises_a_named_error(session: Session, new_order: Callable[..., Order]) -> None:
    order = new_order()
    transition(session, order.order_no, "paid", source="sweep", now=NOW)

    with pytest.raises(IllegalTransition) as err:
        transition(session, order.order_no, "failed", source="sweep", now=NOW)

    assert (err.value.current, err.value.target) == ("paid", "failed")
    assert order.status == "paid"


def test_operator_decides_a_review(session: Session, new_order: Callable[..., Order]) -> None:
    order = new_order()
    transition(session, order.order_no, "needs_review", source="backend", detail="amount differs", now=NOW)

    moved = transition(session, order.order_no, "paid", source="operator", detail="phoned", now=NOW)

    assert moved is True
    assert order.status == "paid"
    assert order.status_reason == "phoned"


def test_transition_of_an_unknown_order_raises(session: Session) -> None:
    with pytest.raises(OrderNotFound):
        transition(session, "NOPE", "paid", source="sweep", now=NOW)


def test_a_stale_stored_state_is_read_again_and_the_move_judged_from_the_row(
    session: Session, new_order: Callable[..., Order]
) -> None:
    # given an order the caller read as pending, which another settler has since paid
    order = new_order()
    stale = Stored("pending", order.ts_no, order.shop_no)
    transition(session, order.order_no, "paid", source="sweep", now=NOW)

    # when the caller moves it to paid (a no-op now) or to failed (illegal now) from its stale read
    again = transition(session, order.order_no, "paid", source="backend", now=NOW, stored=stale,
                       shop_no=order.shop_no)
    with pytest.raises(IllegalTransition) as err:
        transition(session, order.order_no, "failed", source="backend", now=NOW, stored=stale,
                   shop_no=order.shop_no)

    # then its UPDATE lost, the row was read again, and nothing changed twice
    assert again is False
    assert err.value.current == "paid"
    assert [(e.from_status, e.to_status) for e in order_history(session, order.order_no)] == [
        (None, "pending"), ("pending", "paid")
    ]
