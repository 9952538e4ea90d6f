"""What the views use, built once by create_app and kept on the app (tests swap in fakes)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from flask import current_app
from sqlalchemy.orm import Session

from core.db import OneStatement, statement, transaction
from core.services.units import UnitOfWork
from core.settings import Settings
from core.sinopac.client import BankClient
from core.sinopac.types import Observer
from webhook.enqueue import Enqueuer

__all__ = ["ClientFactory", "Database", "Deps", "UnitOfWork", "core_unit", "deps"]


class Database:
    """The app's default unit of work on DATABASE_URL: calling it opens an ORM Session
    (core.db.transaction); `one_statement()` a unit for exactly one statement (core.db.statement),
    the callback receiver's upsert, which needs no Session (core_unit)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __call__(self) -> AbstractContextManager[Session]:
        return transaction(self.url)

    def one_statement(self) -> AbstractContextManager[OneStatement]:
        return statement(self.url)


def core_unit(unit_of_work: UnitOfWork) -> Callable[[], AbstractContextManager[OneStatement | Session]]:
    """The receiver's unit of work: the app's Database gives a one-statement unit (its one upsert
    needs no Session); any other unit of work (a test's) is used as it is, with its Session."""
    if isinstance(unit_of_work, Database):
        return unit_of_work.one_statement
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
