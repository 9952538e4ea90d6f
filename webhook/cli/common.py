"""What every ops command shares: the app's Deps (tests swap in a fake bank or broker), how an order
is named on the command line, how failures exit, and how times and amounts are printed."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import NoReturn

import click
from flask.cli import AppGroup
from sqlalchemy.orm import Session

from core.models import Order
from core.services.bank_calls import record_calls
from core.services.lookup import AmbiguousOrder, NoSuchOrder, find_order
from core.settings import Settings
from core.shops import UnknownShop
from core.sinopac.client import BankClient
from core.sinopac.fields import ORDER_NO_RE
from core.sinopac.types import BankCallRecord
from webhook.deps import deps

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "": 60}

SHOP_OPTION = click.option("--shop", "shop_no", default=None, metavar="SHOP_NO",
                           help="the order's ShopNo (needed when two shops use this OrderNo)")


def settings() -> Settings:
    return deps().settings


def tx() -> AbstractContextManager[Session]:
    return deps().unit_of_work()


def bank(observer: Callable[[BankCallRecord], None], shop_no: str | None = None) -> BankClient:
    return deps().client_factory(observer, shop_no=shop_no)


def enqueuer() -> Callable[[int], bool]:
    return deps().enqueuer.send_resolve


class ShopClients:
    """A ClientFor that builds each shop's client on first use, and closes them all afterwards."""

    def __init__(self, observer: Callable[[BankCallRecord], None]) -> None:
        self._observer = observer
        self._built: dict[str, BankClient] = {}

    def __call__(self, shop_no: str) -> BankClient:
        if shop_no not in self._built:
            self._built[shop_no] = bank(self._observer, settings().shop_for(shop_no).shop_no)
        return self._built[shop_no]

    def close_all(self) -> None:
        for client in self._built.values():
            close(client)


def close(client: BankClient) -> None:
    closer = getattr(client, "close", None)
    if callable(closer):
        closer()


def fail(message: str, code: int = 1) -> NoReturn:
    click.secho(message, fg="red", err=True)
    raise click.exceptions.Exit(code)


def store_calls(session: Session, records: list[BankCallRecord]) -> None:
    """Write the bank calls recorded so far (the command called the bank outside its transactions)."""
    record_calls(session, list(records))
    records.clear()


def record_alone(call: BankCallRecord) -> None:
    """An observer that writes each bank call in its own transaction, as it happens."""
    with tx() as session:
        record_calls(session, [call])


def order_command(group: AppGroup, name: str) -> Callable[[Callable[..., None]], click.Command]:
    """A command of `group` about one order: ORDER_NO and --shop."""

    def wrap(func: Callable[..., None]) -> click.Command:
        return group.command(name)(click.argument("order_no")(SHOP_OPTION(func)))

    return wrap


@contextmanager
def named_order(order_no: str, shop_no: str | None) -> Iterator[tuple[Session, Order]]:
    """The order named on the command line, in a transaction; exit 1 if unknown, 2 if --shop is needed."""
    if not ORDER_NO_RE.fullmatch(order_no):
        raise click.BadParameter("an OrderNo is 1-50 letters, digits, '-' or '_'", param_hint="ORDER_NO")
    with tx() as session:
        try:
            order = find_order(session, order_no, shop_no)
        except NoSuchOrder:
            fail(f"order {order_no} not found" + (f" in shop {shop_no}" if shop_no else ""))
        except AmbiguousOrder as exc:
            shops = ", ".join(exc.shops)
            fail(f"order {order_no} exists in several shops ({shops}): name one with --shop", 2)
        yield session, order


def parse_duration(value: str) -> timedelta:
    """'90s', '30m', '2h', '1d' (a bare number is minutes)."""
    match = _DURATION.match(value)
    if not match:
        raise click.BadParameter(f"{value!r} is not a duration like 90s, 30m, 2h or 1d")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if at else "-"


def money(amount: int | None) -> str:
    return "-" if amount is None else f"{amount / 100:,.2f}"


def shop_label(shop_no: str) -> str:
    """ShopNo, with its display name when one is configured (and a warning when it is no longer)."""
    try:
        shop = settings().shop_for(shop_no)
    except UnknownShop:
        return f"{shop_no} (not configured)"
    return f"{shop_no} ({shop.name})" if shop.name else shop_no
