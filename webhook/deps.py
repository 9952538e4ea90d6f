"""What the views use, built once by create_app and kept on the app (tests swap in fakes)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from flask import current_app

from core.services.units import UnitOfWork
from core.settings import Settings
from core.sinopac.client import BankClient
from core.sinopac.types import Observer
from webhook.enqueue import Enqueuer

__all__ = ["ClientFactory", "Deps", "UnitOfWork", "deps"]


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
