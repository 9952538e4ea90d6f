"""The business figures operations watch (docs/monitoring.md), read at scrape time.

Every query reads a partial index whose size follows the pending work, never the size of the tables:
pending orders (`ix_orders_due_check`), orders in review (`ix_orders_status`, a range of one value),
received and untrusted tokens (`ix_pay_tokens_unresolved`, `ix_pay_tokens_received_first`,
`ix_pay_tokens_untrusted`), the last clean sweep (`ix_sweep_runs_clean`). Resolved tokens and settled
orders, however many millions, are never counted: their totals are history, not work
(bench/RESULTS.md measures a scrape with 1M orders).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import Order, PayToken, SweepRun
from core.states import OrderStatus, TokenState

# The states counted: the ones that are work (waiting, or waiting for an operator).
ORDER_STATES = (OrderStatus.PENDING, OrderStatus.NEEDS_REVIEW)
TOKEN_STATES = (TokenState.RECEIVED, TokenState.UNTRUSTED)


@dataclass(frozen=True)
class Figures:
    orders: dict[str, int]
    tokens: dict[str, int]
    oldest_unresolved_token_age: float  # seconds; 0 when nothing is unresolved
    last_clean_sweep: float | None  # Unix time of the last pass without errors; None before the first


def read_figures(session: Session, *, now: datetime | None = None) -> Figures:
    """Five small indexed reads; safe to call on every scrape."""
    at = now or datetime.now(UTC)
    orders = {
        s.value: session.scalar(select(func.count()).select_from(Order).where(Order.status == s.value)) or 0
        for s in ORDER_STATES
    }
    tokens = {
        s.value: session.scalar(select(func.count()).select_from(PayToken).where(PayToken.state == s.value))
        or 0
        for s in TOKEN_STATES
    }
    oldest = [
        session.scalar(select(func.min(PayToken.first_received_at)).where(PayToken.state == s.value))
        for s in TOKEN_STATES
    ]
    first = min((_aware(t) for t in oldest if t is not None), default=None)
    clean = session.scalar(select(func.max(SweepRun.finished_at)).where(SweepRun.errors == 0))
    return Figures(
        orders=orders,
        tokens=tokens,
        oldest_unresolved_token_age=max(0.0, (at - first).total_seconds()) if first else 0.0,
        last_clean_sweep=_aware(clean).timestamp() if clean is not None else None,
    )


def _aware(value: datetime) -> datetime:
    """func.min/max bypass the column type on SQLite (a naive UTC datetime or a string comes back)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
