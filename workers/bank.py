"""One QPayClient per shop per worker process, whose observer records every bank call
(docs/architecture.md).

Where a record is written depends on the caller: the resolve task records into its own transaction
(on SQLite a second, nested transaction would wait for the first one's write lock), while the sweep
calls the bank outside any transaction, so there each record gets a short transaction of its own.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy.exc import OperationalError

from core.db import transaction
from core.services.bank_calls import recorder
from core.settings import get_settings
from core.sinopac.client import DEFAULT_POOL_SIZE, QPayClient
from core.sinopac.types import BankCallRecord
from metrics import defs as metrics

log = logging.getLogger(__name__)

Sink = Callable[[BankCallRecord], None]
_sink: ContextVar[Sink | None] = ContextVar("qpay_bank_call_sink", default=None)
_clients: dict[str, QPayClient] = {}
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
    (_sink.get() or _record_alone)(record)


@contextmanager
def recording_into(sink: Sink) -> Iterator[None]:
    """Within this block, bank calls of this thread are recorded by `sink` (e.g. the task's session)."""
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)


def size_pool(concurrency: int) -> None:
    """One pooled bank connection per task slot: a threads or gevent pool shares this process's
    client among all its slots (prefork children use one each; unused connections are never opened)."""
    global _pool_size
    _pool_size = max(DEFAULT_POOL_SIZE, concurrency)


def client_for(shop_no: str) -> QPayClient:
    """This process's client of shop `shop_no`, built on first use (never inherited across a fork:
    sockets are not); raises core.shops.UnknownShop for a shop that is not configured."""
    global _client_pid
    if _client_pid != os.getpid():
        _clients.clear()
        _client_pid = os.getpid()
    client = _clients.get(shop_no)
    if client is None:
        settings = get_settings()
        shop = settings.shop_for(shop_no)
        client = QPayClient(settings, shop=shop, observer=_observe, pool_size=_pool_size)
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
