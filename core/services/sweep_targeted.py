"""The sweep's third step: pending orders due for a check are claimed, then queried by OrderNo.

SWEEP_CONCURRENCY OrderQuery calls are in flight at once (each request still waits for its slot in the
bank budget); the writes stay on the pass's thread, one short transaction per order. Slow start: one
call at first, twice as many after each answer, back to one after a transport failure, so an outage
is still found with OUTAGE_AFTER calls, not SWEEP_CONCURRENCY.
"""

from __future__ import annotations

import logging
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError

from core.services.due import claim_due_orders
from core.services.sweep_counts import SweepCounts, bank_error, settle_row
from core.services.transitions import schedule_next_check
from core.services.units import UnitOfWork
from core.settings import Settings
from core.sinopac.client import BankClient
from core.sinopac.errors import BankTransportError
from core.sinopac.messages import OrderQueryRequest
from core.sinopac.types import OrderQueryResult

log = logging.getLogger("core.services.sweep")  # the pass logs as one

OUTAGE_AFTER = 3  # consecutive transport failures that end the targeted step for this pass
MAX_TARGETED_BATCHES = 20  # bounds one pass; the rest stays due for the next one


@dataclass
class Targeted:
    """One shop's targeted step in one pass, and the transport failures in a row it has met."""

    uow: UnitOfWork
    client: BankClient
    settings: Settings
    now: datetime
    counts: SweepCounts
    shop_no: str
    failures_in_a_row: int = 0

    def run(self) -> None:
        width = max(1, self.settings.sweep_concurrency)
        with ThreadPoolExecutor(max_workers=width, thread_name_prefix="sweep-query") as pool:
            for _ in range(MAX_TARGETED_BATCHES):
                with self.uow() as session:
                    # The claim commits here: the rows carry a lease, no lock is held during the bank calls.
                    claimed = claim_due_orders(session, now=self.now, limit=self.settings.sweep_batch,
                                               shop_no=self.shop_no)
                if not claimed or self._batch(pool, width, claimed):
                    return
                if len(claimed) < self.settings.sweep_batch:
                    return

    def _batch(self, pool: ThreadPoolExecutor, width: int, claimed: list[str]) -> bool:
        """Query and settle the claimed orders; True if the step stopped (the bank seems down)."""
        waiting = iter(claimed)
        in_flight: dict[Future[OrderQueryResult], str] = {}
        stopped = False
        limit = 1
        while True:
            while not stopped and len(in_flight) < limit:
                order_no = next(waiting, None)
                if order_no is None:
                    break
                in_flight[pool.submit(_query_one, self.client, order_no)] = order_no
            if not in_flight:
                return stopped
            done, _pending = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                self._result(in_flight.pop(future), future)
                limit = 1 if self.failures_in_a_row else min(width, limit * 2)
            if not stopped and self.failures_in_a_row >= OUTAGE_AFTER:
                # The bank is down: the rest of the claim keeps its lease and is due again after it.
                self.counts.notes.append("targeted: stopped after repeated transport errors")
                stopped = True

    def _result(self, order_no: str, future: Future[OrderQueryResult]) -> None:
        """Apply one OrderQuery answer (or failure), counting transport failures in a row."""
        try:
            result = future.result()
        except BankTransportError as exc:
            bank_error(self.counts, exc, f"OrderQuery {order_no}")
            self.failures_in_a_row += 1
            return
        except Exception as exc:  # QPayError, ValueError, a surprise: never the end of the pass
            # Not an outage, and asking again at once will not help: back off this order.
            bank_error(self.counts, exc, f"OrderQuery {order_no}")
            self._back_off(order_no)
            self.failures_in_a_row = 0
            return
        self.failures_in_a_row = 0
        row = next((r for r in result.orders if r.order_no == order_no), None)
        if row is None:
            log.warning("sweep: the bank does not list order %s", order_no, extra={"order_no": order_no})
            self._back_off(order_no)
            self.counts.still_pending += 1
            return
        self.counts.found += 1
        settle_row(self.uow, self.settings, row, self.now, self.counts, "targeted", self.shop_no)

    def _back_off(self, order_no: str) -> None:
        try:
            with self.uow() as session:
                schedule_next_check(session, self.settings, order_no, now=self.now, shop_no=self.shop_no)
        except SQLAlchemyError as exc:
            self.counts.errors += 1
            log.error("sweep: could not reschedule order %s (%s)", order_no, type(exc).__name__)


def _query_one(client: BankClient, order_no: str) -> OrderQueryResult:
    return client.query_orders(OrderQueryRequest(order_no=order_no))
