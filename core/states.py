"""The order state machine as a table of allowed moves (docs/architecture.md, State machines)."""

from __future__ import annotations

from enum import StrEnum


class OrderStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    FAILED = "failed"
    EXPIRED = "expired"
    NEEDS_REVIEW = "needs_review"


class Source(StrEnum):
    """Who caused a callback record or an order change."""

    BACKEND = "backend"  # the bank's server-to-server push (BackendURL)
    RETURN = "return"  # the customer's browser (ReturnURL)
    SWEEP = "sweep"  # the reconciliation sweep
    OPERATOR = "operator"  # the ops CLI
    API = "api"  # the shop's orders API


class TokenState(StrEnum):
    """Where a stored PayToken stands (pay_tokens.state)."""

    RECEIVED = "received"  # waiting for resolution: the task resolves it, the sweep re-enqueues it
    RESOLVED = "resolved"  # the bank's verified reply was applied to its order
    REJECTED = "rejected"  # the bank refused the token, or it names no order of ours
    # The bank's OrderPayQuery reply failed verification (bad Sign, undecryptable, malformed). Not
    # retried automatically (a blind retry asks the same question of the same broken channel): the
    # sweep's OrderQuery still settles the order, and an operator replays the token deliberately
    # (`flask --app webhook tokens replay`), which moves it back to received.
    UNTRUSTED = "untrusted"
    # Resolution failed RESOLVE_MAX_ATTEMPTS times, whatever the kind of failure (bank outage, bad
    # reply, a bug): one ALERT, never re-enqueued automatically, so no token can loop forever. The
    # sweep's OrderQuery still settles its order; `tokens replay` brings it back to received.
    DEAD = "dead"


FINAL: frozenset[OrderStatus] = frozenset({OrderStatus.PAID, OrderStatus.FAILED, OrderStatus.EXPIRED})

# from -> allowed targets. needs_review leaves only by an operator's decision. expired and failed are
# final for everything but money: a verified paid result for one (an ATM transfer posted after our
# expiry, a card retried after a decline) parks it in needs_review ("paid after expiry" / "paid after
# failure"), never silently dropped and never straight to paid.
ALLOWED: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset(
        {OrderStatus.PAID, OrderStatus.FAILED, OrderStatus.EXPIRED, OrderStatus.NEEDS_REVIEW}
    ),
    OrderStatus.NEEDS_REVIEW: frozenset({OrderStatus.PAID, OrderStatus.FAILED}),
    OrderStatus.PAID: frozenset(),
    OrderStatus.FAILED: frozenset({OrderStatus.NEEDS_REVIEW}),
    OrderStatus.EXPIRED: frozenset({OrderStatus.NEEDS_REVIEW}),
}
# Why a verified payment for an order in this state needs an operator (core/services/settlement.py).
PAID_LATE: dict[OrderStatus, str] = {
    OrderStatus.EXPIRED: "paid after expiry",
    OrderStatus.FAILED: "paid after failure",
}
OPERATOR_ONLY: frozenset[tuple[OrderStatus, OrderStatus]] = frozenset(
    {(OrderStatus.NEEDS_REVIEW, OrderStatus.PAID), (OrderStatus.NEEDS_REVIEW, OrderStatus.FAILED)}
)


class IllegalTransition(Exception):
    """A move the table does not allow (e.g. paid -> failed)."""

    def __init__(self, order_no: str, current: str, target: str, source: str = "") -> None:
        super().__init__(f"order {order_no}: {current} -> {target} is not allowed (source {source or '?'})")
        self.order_no = order_no
        self.current = current
        self.target = target


def check_move(order_no: str, current: OrderStatus, target: OrderStatus, source: Source) -> bool:
    """True if the move must be applied, False if it is a no-op (same state); raises if illegal."""
    if current == target:
        return False
    if target not in ALLOWED[current]:
        raise IllegalTransition(order_no, current, target, source)
    if (current, target) in OPERATOR_ONLY and source is not Source.OPERATOR:
        raise IllegalTransition(order_no, current, target, source)
    return True
