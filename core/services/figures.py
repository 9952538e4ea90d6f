"""The business figures operations watch (docs/monitoring.md), read at scrape time.

Every query reads a partial index whose size follows the pending work, never the size of the tables:
pending orders (`ix_orders_due_check`), orders in review (`ix_orders_status`, a range of one value),
received, untrusted and dead tokens (`ix_pay_tokens_unresolved`, `ix_pay_tokens_received_first`,
`ix_pay_tokens_untrusted`, `ix_pay_tokens_dead`), the last clean sweep (`ix_sweep_runs_clean`).
Resolved tokens and settled orders, however many millions, are never counted: their totals are
history, not work (bench/RESULTS.md measures a scrape with 1M orders).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, func, select
from sqlalchemy.orm import Session

from core.models import Order, PayToken, SweepRun
from core.states import OrderStatus, TokenState

# The states counted: the ones that are work (waiting, or waiting for an operator).
ORDER_STATES = (OrderStatus.PENDING, OrderStatus.NEEDS_REVIEW)
TOKEN_STATES = (TokenState.RECEIVED, TokenState.UNTRUSTED, TokenState.DEAD)


@dataclass(frozen=True)
class Figures:
    orders: dict[str, int]
    tokens: dict[str, int]
    oldest_unresolved_token_age: float  # seconds; 0 when nothing is unresolved
    last_clean_sweep: float | None  # Unix time of the last pass without errors; None before the first


def read_figures(session: Session, *, now: datetime | None = None) -> Figures:
    """One statement of nine scalar subqueries (one round trip), each an indexed read; safe on every
    scrape."""
    at = now or datetime.now(UTC)

    def count(model: type[Order] | type[PayToken], condition: ColumnElement[bool]) -> ScalarSelect[Any]:
        return select(func.count()).select_from(model).where(condition).scalar_subquery()

    def oldest(state: TokenState) -> ScalarSelect[Any]:
        first = func.min(PayToken.first_received_at)
        return select(first).where(PayToken.state == state.value).scalar_subquery()

    columns: dict[str, ScalarSelect[Any]] = {
        **{f"order_{s.value}": count(Order, Order.status == s.value) for s in ORDER_STATES},
        **{f"token_{s.value}": count(PayToken, PayToken.state == s.value) for s in TOKEN_STATES},
        **{f"oldest_{s.value}": oldest(s) for s in TOKEN_STATES},
        "clean_sweep": select(func.max(SweepRun.finished_at)).where(SweepRun.errors == 0).scalar_subquery(),
    }
    row = session.execute(select(*(c.label(name) for name, c in columns.items()))).one()._mapping
    first = min((_aware(row[f"oldest_{s.value}"]) for s in TOKEN_STATES
                 if row[f"oldest_{s.value}"] is not None), default=None)
    clean = row["clean_sweep"]
    return Figures(
        orders={s.value: int(row[f"order_{s.value}"] or 0) for s in ORDER_STATES},
        tokens={s.value: int(row[f"token_{s.value}"] or 0) for s in TOKEN_STATES},
        oldest_unresolved_token_age=max(0.0, (at - first).total_seconds()) if first else 0.0,
        last_clean_sweep=_aware(clean).timestamp() if clean is not None else None,
    )


def _aware(value: datetime) -> datetime:
    """min/max in a scalar subquery lose the column type on SQLite (a naive UTC datetime or a string
    comes back)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
