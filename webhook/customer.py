"""The customer's pages: the hosted checkout page and the return page after paying.

    GET /checkout/<order_no>?t=<checkout token>   how to pay, then the outcome (core/checkout.py signs t)
    GET /qpay/return/<pay_token>                   where POST /qpay/return leads: the outcome of a payment

Each is a "live" page: its script fetches the same URL again with backoff and swaps in the new state
until it is final; with JavaScript off a <noscript> meta refresh does the same. Order details go only to
whoever holds the order's checkout token or a PayToken of it; a wrong token is the same 404 page as an
unknown order, so the pages tell nothing to someone guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from flask import Blueprint, Response, request, url_for

from core.checkout import checkout_shop, checkout_token_ok, shop_display_name, shop_return_url
from core.models import Order
from core.services.orders import get_order
from core.shops import UnknownShop
from core.sinopac.fields import ORDER_NO_RE
from webhook.deps import deps
from webhook.errors import DB_UNAVAILABLE
from webhook.pages import customer_page, problem_page
from webhook.status import token_progress
from webhook.texts import TEXTS, Lang, account_groups, pick_language, taipei_deadline, twd
from webhook.validation import is_valid_pay_token

bp = Blueprint("customer", __name__)

# The phases a page shows (texts.py has a status_<phase> word for each); the last four end the polling.
FINAL_PHASES = frozenset({"paid", "failed", "expired", "review"})
CHECKOUT_REFRESH = 10  # seconds between meta refreshes with JavaScript off
RETURN_REFRESH = 3


@dataclass(frozen=True)
class OrderView:
    """What the pages show of an order, already formatted (read inside the transaction)."""

    order_no: str
    shop_no: str
    status: str
    product_name: str
    amount: str
    pay_type: str
    account: str
    account_digits: str
    deadline: str | None
    card_pay_url: str | None


def order_view(order: Order) -> OrderView:
    digits = "".join(ch for ch in order.atm_pay_no or "" if ch.isdigit())
    return OrderView(
        order_no=order.order_no,
        shop_no=order.shop_no,
        status=order.status,
        product_name=order.product_name,
        amount=twd(order.amount),
        pay_type=order.pay_type,
        account=account_groups(digits),
        account_digits=digits,
        deadline=taipei_deadline(order.expires_at) if isinstance(order.expires_at, datetime) else None,
        card_pay_url=_web_link(order.card_pay_url),
    )


def _web_link(url: str | None) -> str | None:
    """The bank's card page as a link only if it is http(s): never a javascript: or data: URL."""
    if url and urlparse(url).scheme in {"http", "https"}:
        return url
    return None


def order_phase(status: str, *, before_payment: bool) -> str:
    """The page's phase for an order status: pending is 'awaiting' on checkout, 'confirming' after paying."""
    if status in ("paid", "failed", "expired"):
        return status
    if status == "needs_review":
        return "review"
    return "awaiting" if before_payment else "confirming"


def token_phase(word: str) -> str:
    """The phase for a PayToken not (yet) linked to an order: token_status's word."""
    return "review" if word in ("rejected", "needs_review") else "confirming"


def _other_language_url(lang: Lang) -> str:
    other = "en" if lang == "zh-TW" else "zh-TW"
    assert request.endpoint is not None
    values: dict[str, Any] = {**request.args.to_dict(), **(request.view_args or {}), "lang": other}
    return url_for(request.endpoint, **values)


def _live_page(template: str, lang: Lang, view: OrderView | None, phase: str,
               refresh_seconds: int) -> Response:
    settings = deps().settings
    final = phase in FINAL_PHASES
    back_url = shop_return_url(settings, view.order_no) if view is not None and final else None
    delay = settings.shop_return_delay
    if not final:
        refresh: str | None = str(refresh_seconds)
    elif back_url and delay > 0:
        refresh = f"{delay};url={back_url}"
    else:
        refresh = None
    return customer_page(
        template, 200, lang, live=True,
        title=_title(template, lang),
        shop_name=shop_display_name(settings, view.shop_no) if view is not None else None,
        view=view, phase=phase, final=final, state_key=f"{phase}:{int(view is not None)}",
        back_url=back_url, back_delay=delay, refresh=refresh,
        other_lang_url=_other_language_url(lang),
    )


def _title(template: str, lang: Lang) -> str:
    return TEXTS[lang]["checkout_title" if template == "checkout.html" else "return_title"]


def not_found_page(lang: Lang) -> Response:
    t = TEXTS[lang]
    return customer_page("message.html", 404, lang, title=t["not_found_title"], message=t["not_found"])


def _unavailable_page(lang: Lang) -> Response:
    """The database is down: a page asking to reload (a customer never sees the API's JSON error)."""
    return problem_page(503, lang, "busy_title", TEXTS[lang]["unavailable"])


@bp.get("/checkout/<order_no>")
def checkout(order_no: str) -> Response:
    lang = pick_language(request)
    d = deps()
    try:
        shop = checkout_shop(d.settings, request.args.get("shop"))
    except UnknownShop:
        return not_found_page(lang)
    if not ORDER_NO_RE.fullmatch(order_no) or not checkout_token_ok(
        d.settings.checkout_secret, order_no, request.args.get("t"), shop
    ):
        return not_found_page(lang)
    try:
        with d.unit_of_work() as session:
            order = get_order(session, order_no, shop)
            view = order_view(order) if order is not None else None
    except DB_UNAVAILABLE:
        return _unavailable_page(lang)
    if view is None:
        return not_found_page(lang)
    phase = order_phase(view.status, before_payment=True)
    return _live_page("checkout.html", lang, view, phase, CHECKOUT_REFRESH)


@bp.get("/qpay/return/<pay_token>")
def return_page(pay_token: str) -> Response:
    lang = pick_language(request)
    if not is_valid_pay_token(pay_token):
        return not_found_page(lang)
    try:
        with deps().unit_of_work() as session:
            found = token_progress(session, pay_token)
            order = get_order(session, found[1], found[2]) if found is not None and found[1] else None
            view = order_view(order) if order is not None else None
    except DB_UNAVAILABLE:
        return _unavailable_page(lang)
    if found is None:
        return not_found_page(lang)
    phase = order_phase(view.status, before_payment=False) if view is not None else token_phase(found[0])
    return _live_page("return.html", lang, view, phase, RETURN_REFRESH)
