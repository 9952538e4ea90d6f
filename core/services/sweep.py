"""The reconciliation sweep: whatever the callbacks missed, the sweep finds (docs/architecture.md).

One pass, three steps, each in short transactions with every bank call outside them:
  1. requeue   tokens stored but still unresolved after the grace period are enqueued again (the
               outbox relay: the broker was down, the worker died, or retries ran out); so are shop
               events neither delivered nor failed whose delivery is due and not running;
  2. bulk      OrderQuery by PayDateTime window [last window end - overlap, now] with PayFlag=Y settles
               pending orders the bank reports paid; a window that hits the bank's 300-row maximum is
               split in halves down to one minute;
  3. targeted  pending orders due for a check (per-order backoff) are claimed, then queried by
               OrderNo, SWEEP_CONCURRENCY calls in flight at once (each request still takes its slot
               in the bank budget); unpaid ATM orders past expiry become expired.

Every configured shop gets its own pass with its own keys, bulk window and SweepRun row; one shop's
bank trouble (an outage, keys the bank refuses) only counts errors in that shop's pass.

Safe when two passes run at once: claims use FOR UPDATE SKIP LOCKED and a lease, every order change is
a conditional UPDATE, and enqueueing a token twice is harmless (resolution is idempotent). A bank
outage counts errors and leaves the work to the next pass; it never aborts the pass. The counts are
logged and stored as a SweepRun row.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core.models import SweepRun
from core.services.callbacks import mark_enqueued
from core.services.due import due_tokens
from core.services.notify import due_events, mark_relayed
from core.services.sweep_counts import SweepCounts, bank_error, settle_row
from core.services.sweep_targeted import Targeted
from core.services.units import UnitOfWork
from core.settings import Settings
from core.sinopac.client import BankClient, ClientFor, client_of
from core.sinopac.messages import OrderQueryRequest

__all__ = ["BANK_MAX_ROWS", "Enqueue", "SweepCounts", "run_sweep"]

log = logging.getLogger(__name__)

# Sends one resolve task for a pay_tokens id: True when the broker took it, False when it did not (the
# broker is down). The webhook's Enqueuer.send_resolve is one; a failure is reported, not raised.
Enqueue = Callable[[int], bool]
BANK_MAX_ROWS = 300  # OrderQuery returns at most this many orders (PROTOCOL.md §9.3)
MIN_WINDOW = timedelta(minutes=1)  # the bank's time fields have minute precision
FIRST_LOOKBACK = timedelta(days=1)


def run_sweep(
    unit_of_work: UnitOfWork,
    client: BankClient | ClientFor,
    settings: Settings,
    enqueue: Enqueue,
    *,
    now: datetime | None = None,
    relay: Enqueue | None = None,
) -> SweepCounts:
    """One reconciliation pass over every shop (`client`: one shop's client, or a ClientFor); returns
    the total and records one SweepRun per shop. `relay` sends one shop event's delivery (None when no
    SHOP_WEBHOOK_URL is set: nothing to push); the events' relay runs once per pass."""
    now = now or datetime.now(UTC)
    total = SweepCounts()
    starts: list[datetime | None] = []
    ends: list[datetime | None] = []
    for index, shop in enumerate(settings.all_shops):
        counts = SweepCounts()
        if relay is not None and index == 0:  # events are not per shop: relayed once, on the first row
            _relay_events(unit_of_work, settings, relay, now, counts)
        try:
            _shop_pass(unit_of_work, client_of(client, shop.shop_no), settings, enqueue, now, counts,
                       shop.shop_no)
        except SQLAlchemyError:
            raise  # the database is down: every shop's pass would fail the same way
        except Exception as exc:  # a bug or a broken client for this shop must not stop the others
            counts.errors += 1
            counts.notes.append(f"pass failed: {type(exc).__name__}")
            log.exception("sweep: shop %s: pass failed", shop.shop_no, extra={"shop_no": shop.shop_no})
        _record(unit_of_work, counts, now, shop.shop_no)
        total.add(counts)
        starts.append(counts.window_start)
        ends.append(counts.window_end)
    # The total's window: the earliest start, and an end only if every shop read its whole window.
    total.window_start = min((s for s in starts if s is not None), default=None)
    read = [end for end in ends if end is not None]
    total.window_end = min(read, default=None) if len(read) == len(ends) else None
    return total


def _shop_pass(
    uow: UnitOfWork, client: BankClient, settings: Settings, enqueue: Enqueue, now: datetime,
    counts: SweepCounts, shop_no: str,
) -> None:
    _requeue(uow, settings, enqueue, now, counts, shop_no)
    _bulk(uow, client, settings, now, counts, shop_no)
    Targeted(uow, client, settings, now, counts, shop_no).run()


def _record(unit_of_work: UnitOfWork, counts: SweepCounts, now: datetime, shop_no: str) -> None:
    with unit_of_work() as session:
        session.add(
            SweepRun(
                shop_no=shop_no,
                started_at=now,
                finished_at=datetime.now(UTC),
                window_start=counts.window_start,
                window_end=counts.window_end,
                detail="; ".join(counts.notes)[:2000] or None,
                **counts.as_dict(),
            )
        )
    level = logging.WARNING if counts.errors else logging.INFO
    log.log(level, "sweep: shop %s: %s", shop_no, " ".join(f"{k}={v}" for k, v in counts.as_dict().items()),
            extra={"sweep": counts.as_dict(), "shop_no": shop_no})


# -- 1. the outbox relay ----------------------------------------------------------------------------


def _requeue(
    uow: UnitOfWork, settings: Settings, enqueue: Enqueue, now: datetime, counts: SweepCounts, shop_no: str
) -> None:
    def mark(session: Session, token_ids: list[int]) -> None:
        for token_id in token_ids:
            mark_enqueued(session, token_id, now=now)

    due = functools.partial(due_tokens, shop_no=shop_no)
    counts.requeued = _relay(uow, settings, now, counts, "token", due, enqueue, mark)
    counts.by_step["requeued"] = counts.requeued


def _relay_events(
    uow: UnitOfWork, settings: Settings, relay: Enqueue, now: datetime, counts: SweepCounts
) -> None:
    """The shop events' outbox relay: undelivered events with no live delivery are sent again."""
    def mark(session: Session, event_ids: list[int]) -> None:
        mark_relayed(session, event_ids, now=now)

    counts.events_relayed = _relay(uow, settings, now, counts, "event", due_events, relay, mark)


def _relay(
    uow: UnitOfWork,
    settings: Settings,
    now: datetime,
    counts: SweepCounts,
    what: str,
    due: Callable[..., list[int]],
    send: Enqueue,
    mark: Callable[[Session, list[int]], None],
) -> int:
    """Read what is due, send it, stamp what the broker took; how many were sent."""
    with uow() as session:
        ids = due(session, now=now, grace=settings.sweep_grace, limit=settings.sweep_batch)
    sent = _send_all(ids, send, counts, what)
    if sent:
        with uow() as session:
            mark(session, sent)
    return len(sent)


def _send_all(ids: list[int], send: Enqueue, counts: SweepCounts, what: str) -> list[int]:
    """Send each id until the broker refuses one (the rest would fail alike); the ids it took."""
    sent: list[int] = []
    for item in ids:
        try:
            accepted = send(item) is True
            reason = "broker unreachable"
        except Exception as exc:  # against the contract, but it must not end the pass either
            accepted, reason = False, type(exc).__name__
        if not accepted:
            # The broker is down: the rows are durable, the next pass tries again.
            counts.errors += 1
            counts.notes.append(f"enqueue failed: {reason}")
            log.warning("sweep: could not enqueue %s %s (%s)", what, item, reason)
            break
        sent.append(item)
    return sent


# -- 2. bulk: what the bank says was paid in the window ----------------------------------------------


def _window_start(uow: UnitOfWork, settings: Settings, now: datetime, shop_no: str) -> datetime:
    """Where this shop's bulk window starts: its last complete window's end (a pass recorded before
    several shops, with no shop, counts for every shop), less the overlap."""
    with uow() as session:
        last_end = session.scalar(
            select(func.max(SweepRun.window_end)).where(
                or_(SweepRun.shop_no == shop_no, SweepRun.shop_no.is_(None))
            )
        )
    if last_end is None:
        return now - FIRST_LOOKBACK
    return min(last_end - timedelta(seconds=settings.sweep_window_overlap), now)


def _minute(dt: datetime) -> datetime:
    return dt.replace(second=0, microsecond=0)


def _split(start: datetime, end: datetime) -> list[tuple[datetime, datetime]] | None:
    """Two halves in whole minutes (the bank's bounds are inclusive minutes), or None for one minute."""
    lo, hi = _minute(start), _minute(end)
    if hi <= lo:
        return None
    minutes = int((hi - lo) / MIN_WINDOW)
    mid = lo + MIN_WINDOW * (minutes // 2)
    return [(lo, mid), (mid + MIN_WINDOW, end)]


def _bulk(
    uow: UnitOfWork, client: BankClient, settings: Settings, now: datetime, counts: SweepCounts, shop_no: str
) -> None:
    start = _window_start(uow, settings, now, shop_no)
    counts.window_start = start
    pending = [(start, now)]
    seen: set[str] = set()
    complete = True
    while pending:
        lo, hi = pending.pop()
        try:
            result = client.query_orders(OrderQueryRequest(pay_from=lo, pay_to=hi, pay_flag="Y"))
        except Exception as exc:  # QPayError, ValueError, or a surprise: never the end of the pass
            # An outage or a refusal: this window is not read, so the next pass starts from the last
            # complete one. Nothing else in the bulk step would fare better now.
            bank_error(counts, exc, "bulk OrderQuery")
            complete = False
            break
        rows = result.orders
        if len(rows) >= BANK_MAX_ROWS:
            halves = _split(lo, hi)
            if halves is not None:
                pending.extend(halves)
                continue
            counts.notes.append(f"bulk: the bank's maximum in the one-minute window {lo:%Y-%m-%d %H:%M}Z; "
                                "the rest is left to the targeted step")
            log.warning("sweep: bank returned its maximum for a one-minute window at %s", lo.isoformat())
        fresh = [row for row in rows if row.order_no not in seen]
        seen.update(row.order_no for row in fresh)
        counts.found += len(fresh)
        for row in fresh:
            settle_row(uow, settings, row, now, counts, "bulk", shop_no)
    if complete:
        counts.window_end = now
