"""What the views use, built once by create_app and kept on the app (tests swap in fakes)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from flask import current_app
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from core.db import connection, transaction
from core.services.units import UnitOfWork
from core.settings import Settings
from core.sinopac.client import BankClient
from core.sinopac.types import Observer
from webhook.enqueue import Enqueuer

__all__ = ["ClientFactory", "Database", "Deps", "UnitOfWork", "core_unit", "deps"]


class Database:
    """The app's default unit of work on DATABASE_URL: calling it opens an ORM Session
    (core.db.transaction); `connect()` a Core connection (core.db.connection) for the callback
    receiver, whose one upsert needs no Session (core_unit)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __call__(self) -> AbstractContextManager[Session]:
        return transaction(self.url)

    def connect(self) -> AbstractContextManager[Connection]:
        return connection(self.url)


def core_unit(unit_of_work: UnitOfWork) -> Callable[[], AbstractContextManager[Connection | Session]]:
    """The receiver's unit of work: the app's Database gives a Core connection (its one upsert needs
    no Session); any other unit of work (a test's) is used as it is, with its Session."""
    if isinstance(unit_of_work, Database):
        return unit_of_work.connect
    return unit_of_work


class ClientFactory(Protocol):
    """A bank client for one shop (None: the default shop) whose observer records each call."""

    def __call__(self, observer: Observer, shop_no: str | None = None) -> BankClient: ...


@dataclass
class Deps:
    settings: Settings
    shops: frozenset[str]
    unit_of_work: UnitOfWork
    enqueuer: Enqueuer
    client_factory: ClientFactory
    probes: ThreadPoolExecutor  # runs readiness checks under a deadline


def deps() -> Deps:
    found = current_app.extensions["qpay"]
    if not isinstance(found, Deps):
        raise RuntimeError("the app was not built by webhook.create_app()")
    return found
