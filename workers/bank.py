"""One QPayClient per shop per worker process, whose observer records every bank call
(docs/architecture.md).

Neither the resolve task nor the sweep calls the bank inside a transaction, so each record gets a
short transaction of its own after the call (a failure to record never fails the work).
"""

from __future__ import annotations

import logging
import os

from sqlalchemy.exc import OperationalError

from core.budget import bank_budget
from core.db import transaction
from core.services.bank_calls import recorder
from core.settings import get_settings
from core.sinopac.client import DEFAULT_POOL_SIZE, Budget, QPayClient
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


def _observe(record: BankCallRecord) -> None:
    metrics.bank_call(record)
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
