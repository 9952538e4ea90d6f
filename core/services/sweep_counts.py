"""What a sweep pass counts, and the two things every step counts the same way: a settled
OrderQuery row and a failed bank call (core/services/sweep.py runs the pass)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError

from core.services.outcomes import SettleKind, SettleOutcome
from core.services.settlement import settle_from_query_row
from core.services.units import UnitOfWork
from core.settings import Settings
from core.sinopac.errors import BankProtocolError, QPayError
from core.sinopac.types import OrderQueryRow
from core.states import Source

log = logging.getLogger("core.services.sweep")  # the pass logs as one


@dataclass
class SweepCounts:
    requeued: int = 0
    found: int = 0
    settled: int = 0
    expired: int = 0
    still_pending: int = 0
    errors: int = 0
    events_relayed: int = 0
    window_start: datetime | None = None
    window_end: datetime | None = None  # set only when the whole bulk window was read
    notes: list[str] = field(default_factory=list)
    # Orders moved per step (bulk, targeted; expired) and tokens requeued: the metrics' step label.
    by_step: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if isinstance(v, int)}

    def add(self, other: SweepCounts) -> None:
        for name, value in other.as_dict().items():
            setattr(self, name, getattr(self, name) + value)
        self.notes += other.notes
        for step, n in other.by_step.items():
            self.by_step[step] = self.by_step.get(step, 0) + n

    def count(self, outcome: SettleOutcome, step: str) -> None:
        if outcome.kind is SettleKind.PENDING:
            self.still_pending += 1
            return
        if not outcome.changed:
            return
        if outcome.kind is SettleKind.EXPIRED:
            self.expired += 1
            step = "expired"
        else:
            self.settled += 1
        self.by_step[step] = self.by_step.get(step, 0) + 1


def settle_row(
    uow: UnitOfWork, settings: Settings, row: OrderQueryRow, now: datetime, counts: SweepCounts, step: str,
    shop_no: str,
) -> None:
    """Settle one OrderQuery row in its own transaction and count what it did; never raises."""
    try:
        with uow() as session:
            outcome = settle_from_query_row(session, settings, row, source=Source.SWEEP, now=now,
                                            shop_no=shop_no)
    except SQLAlchemyError as exc:
        counts.errors += 1
        log.error("sweep: could not settle order %s (%s)", row.order_no, type(exc).__name__)
        return
    except Exception:  # one odd row must not end the pass for every other order
        counts.errors += 1
        log.exception("sweep: could not settle order %s", row.order_no)
        return
    if outcome.kind is SettleKind.REVIEW and outcome.changed:
        # Late payments (paid after expiry / failure) and mismatches: someone must look.
        log.error("ALERT sweep: order %s needs review: %s", row.order_no, outcome.reason,
                  extra={"order_no": row.order_no, "reason": outcome.reason})
    if outcome.kind is not SettleKind.UNKNOWN_ORDER:
        counts.count(outcome, step)


def bank_error(counts: SweepCounts, exc: Exception, what: str) -> None:
    """Count a failed bank call; the log level says how worried to be (an untrustworthy reply: ALERT)."""
    counts.errors += 1
    kind = type(exc).__name__
    if isinstance(exc, BankProtocolError):
        log.error("ALERT sweep: %s: untrustworthy reply (%s: %s)", what, kind, exc)
    elif not isinstance(exc, (QPayError, ValueError)):
        log.error("sweep: %s failed unexpectedly (%s)", what, kind, exc_info=exc)
    else:
        log.warning("sweep: %s failed (%s: %s)", what, kind, exc)
    if len(counts.notes) < 20:
        counts.notes.append(f"{what}: {kind}")
