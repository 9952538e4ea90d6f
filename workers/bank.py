"""One QPayClient per shop per worker process, whose observer records every bank call
(docs/architecture.md).

Neither the resolve task nor the sweep calls the bank inside a transaction, so a record gets a short
transaction of its own after the call (a failure to record never fails the work), or, within the
resolve task (records_with_the_work), is written by the task's next transaction, its write.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from core.budget import bank_budget
from core.db import transaction
from core.services.bank_calls import record_calls, recorder
from core.services.units import UnitOfWork
from core.settings import get_settings
from core.sinopac.client import QPayClient
from core.sinopac.transport import DEFAULT_POOL_SIZE, Budget
from core.sinopac.types import BankCallRecord
from metrics import defs as metrics

log = logging.getLogger(__name__)

_clients: dict[str, QPayClient] = {}
_budget: Budget | None = None  # one per process, shared by every shop's client (the bank counts them all)
_client_pid: int | None = None
_pool_size = DEFAULT_POOL_SIZE


def _record_alone(record: BankCallRecord) -> None:
    """Record one call in its own transaction; a failure to record never fails the work itself."""
    try:
        with transaction() as session:
            recorder(session)(record)
    except OperationalError as exc:  # the database is down: expected in an outage, no traceback
        log.warning("could not record a bank call (%s %s): database unavailable (%s)",
                    record.api_service, record.outcome, type(exc.orig).__name__)
    except Exception:  # anything else is a bug worth its traceback
        log.exception("could not record a bank call (%s %s)", record.api_service, record.outcome)


_deferred = threading.local()  # .pending: this thread's records waiting for its next transaction


def _observe(record: BankCallRecord) -> None:
    metrics.bank_call(record)
    pending: list[BankCallRecord] | None = getattr(_deferred, "pending", None)
    if pending is not None:
        pending.append(record)
        return
    _record_alone(record)


@contextmanager
def records_with_the_work() -> Iterator[UnitOfWork]:
    """A unit of work whose transactions also write this thread's bank call records made since the
    last one: the resolve task's write transaction carries its OrderPayQuery and OrderQuery rows (one
    commit for the work and its records instead of three; none while the bank answers). A record
    whose transaction rolls back waits for the next; whatever is left at the end is written alone."""
    _deferred.pending = []

    @contextmanager
    def unit() -> Iterator[Session]:
        pending: list[BankCallRecord] = _deferred.pending
        taken = pending[:]
        del pending[:]
        try:
            with transaction() as session:
                record_calls(session, taken)
                yield session
        except BaseException:
            pending[:0] = taken
            raise

    try:
        yield unit
    finally:
        left: list[BankCallRecord] = _deferred.pending
        _deferred.pending = None
        for record in left:
            _record_alone(record)


def size_pool(concurrency: int) -> None:
    """One pooled bank connection per task slot: a threads or gevent pool shares this process's
    client among all its slots (prefork children use one each; unused connections are never opened)."""
    global _pool_size
    _pool_size = max(DEFAULT_POOL_SIZE, concurrency)


def client_for(shop_no: str) -> QPayClient:
    """This process's client of shop `shop_no`, built on first use (never inherited across a fork:
    sockets are not); raises core.shops.UnknownShop for a shop that is not configured."""
    global _client_pid, _budget
    settings = get_settings()
    if _client_pid != os.getpid():
        _clients.clear()
        _budget = bank_budget(settings)
        _client_pid = os.getpid()
    client = _clients.get(shop_no)
    if client is None:
        shop = settings.shop_for(shop_no)
        client = QPayClient(settings, shop=shop, observer=_observe, pool_size=_pool_size, budget=_budget)
        _clients[shop_no] = client
    return client


def bank_client() -> QPayClient:
    """This process's client of the default (first) shop."""
    return client_for(get_settings().shop_no)


def reset_client() -> None:
    """Forget the clients after a fork; the parent's copies are left for the parent to close."""
    global _client_pid
    _clients.clear()
    _client_pid = None
