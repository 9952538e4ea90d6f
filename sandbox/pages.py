"""The customer's pages: the card payment page, the ATM page, and the return to the shop.

Every value shown is escaped: OrderNo, PrdtName and URLs come from the shop's request.
"""

from __future__ import annotations

from html import escape

from sandbox.records import Order

__all__ = ["message_page", "payment_page", "return_form"]

_STYLE = (
    "body{font-family:sans-serif;max-width:32em;margin:3em auto;color:#222}"
    "table{border-collapse:collapse}td{padding:.2em 1em .2em 0}"
    "button{font-size:1.1em;padding:.4em 1.2em;margin-right:1em}"
)


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html lang=\"zh-Hant\"><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )


def _twd(amount: int) -> str:
    return f"NT${amount // 100:,}.{amount % 100:02d}"


def payment_page(order: Order, action: str, status: str) -> str:
    """The bank's page for one order: details, then Pay (and Decline, for a card)."""
    card = order.pay_type == "C"
    rows = [("Shop", order.shop_no), ("Order", order.order_no), ("Product", order.prdt_name),
            ("Amount", _twd(order.amount)), ("PayStatus", status)]
    if not card:
        rows.append(("Account", f"807-{order.atm_pay_no}"))
    table = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in rows)
    buttons = "<button type=\"submit\" name=\"outcome\" value=\"paid\">Pay</button>"
    if card:
        buttons += "<button type=\"submit\" name=\"outcome\" value=\"failed\">Decline</button>"
    form = f"<form method=\"post\" action=\"{escape(action)}\">{buttons}</form>"
    title = "SinoPac sandbox — card payment" if card else "SinoPac sandbox — ATM transfer"
    return _page(title, f"<table>{table}</table><p>{form}</p>")


def return_form(return_url: str, shop_no: str, pay_token: str) -> str:
    """Sends the browser back to the shop's ReturnURL with a form POST of ShopNo and PayToken."""
    fields = (
        f"<input type=\"hidden\" name=\"ShopNo\" value=\"{escape(shop_no)}\">"
        f"<input type=\"hidden\" name=\"PayToken\" value=\"{escape(pay_token)}\">"
    )
    body = (
        f"<form id=\"back\" method=\"post\" action=\"{escape(return_url)}\">{fields}"
        "<noscript><button type=\"submit\">Back to the shop</button></noscript></form>"
        "<script>document.getElementById('back').submit();</script>"
    )
    return _page("Returning to the shop…", body)


def message_page(title: str, text: str) -> str:
    return _page(title, f"<p>{escape(text)}</p>")


def maintenance_page() -> str:
    """What a bank's front end serves while its API is down for maintenance (HTTP 200, HTML)."""
    return ("<!DOCTYPE html><html><head><title>系統維護中</title></head><body><h1>系統維護中</h1>"
            "<p>The service is under maintenance. Please try again later.</p></body></html>")
