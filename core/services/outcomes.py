"""What settling an order and resolving a PayToken concluded, as typed values.

A settlement's kind is translated into a resolution's kind in one place (`ResolveKind.of`); the
callers (the resolve task, the ops CLI, the sweep) read these enums, never guess at strings.
Both enums are StrEnums, so `outcome.kind == "paid"` and the task's return value stay plain strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from core.states import OrderStatus


class SettleKind(StrEnum):
    """What one settlement concluded about an order."""

    PAID = "paid"
    FAILED = "failed"
    EXPIRED = "expired"
    REVIEW = "review"  # parked in needs_review, with the reason
    PENDING = "pending"  # still unpaid; its next check is scheduled
    NOOP = "noop"  # nothing to change (already there, or a race lost)
    CONFLICT = "conflict"  # the bank's word contradicts a final or parked order: logged, not changed
    UNKNOWN_ORDER = "unknown_order"  # the bank named no order of ours

    @classmethod
    def reaching(cls, target: OrderStatus) -> SettleKind:
        """The kind of a settlement that moved an order to `target`."""
        return _REACHING[target]


_REACHING: dict[OrderStatus, SettleKind] = {
    OrderStatus.PAID: SettleKind.PAID,
    OrderStatus.FAILED: SettleKind.FAILED,
    OrderStatus.EXPIRED: SettleKind.EXPIRED,
    OrderStatus.NEEDS_REVIEW: SettleKind.REVIEW,
    OrderStatus.PENDING: SettleKind.PENDING,
}


@dataclass(frozen=True)
class SettleOutcome:
    """What a settlement concluded. `changed` is True only if this call moved the order."""

    kind: SettleKind
    order_no: str | None
    changed: bool = False
    reason: str | None = None


class ResolveKind(StrEnum):
    """What resolving one PayToken concluded (core/services/resolution.py)."""

    SETTLED = "settled"  # this call moved the order to paid or failed
    NOOP = "noop"
    REVIEW = "review"  # this call parked the order in needs_review
    REJECTED = "rejected"  # the bank refused the token, or it names no order of ours
    TRANSIENT = "transient"  # try again later
    PROTOCOL_ERROR = "protocol_error"  # the bank's reply failed verification: the token is untrusted
    DEAD = "dead"  # this failure was the last allowed attempt

    @property
    def failed(self) -> bool:
        """The token was not resolved: the operator (CLI) is told so on stderr, with exit 1."""
        return self in _FAILED

    @classmethod
    def of(cls, outcome: SettleOutcome) -> ResolveKind:
        """The one translation of a settlement into a resolution (an unknown order: rejected)."""
        if outcome.kind is SettleKind.UNKNOWN_ORDER:
            return cls.REJECTED
        if outcome.changed and outcome.kind in (SettleKind.PAID, SettleKind.FAILED):
            return cls.SETTLED
        if outcome.changed and outcome.kind is SettleKind.REVIEW:
            return cls.REVIEW
        return cls.NOOP


_FAILED = frozenset({ResolveKind.REJECTED, ResolveKind.TRANSIENT, ResolveKind.PROTOCOL_ERROR,
                     ResolveKind.DEAD})


@dataclass(frozen=True)
class ResolveOutcome:
    kind: ResolveKind
    error: str | None = None
    order_no: str | None = None
    token_label: str | None = None  # the PayToken shortened for logs (set for protocol_error and dead)
    received_at: datetime | None = None  # the token's first receipt (set for settled: the metrics' start)
