"""HTTP routing for the sandbox: the bank's API and the customer pages (the admin API: sandbox.admin).

The standard library's ThreadingHTTPServer (one thread per connection, HTTP/1.1 keep-alive) is used
rather than Flask: the sandbox needs raw control of the connection to inject faults (hold it open,
close it without a reply, send half a body), it starts in a blink, and it has no framework coupling
with the webhook it is meant to exercise. Shared state lives in Bank, behind its lock.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sandbox import pages, wire
from sandbox.admin import AdminRoutes
from sandbox.faults import Decision
from sandbox.plumbing import BadRequest
from sandbox.records import PayError
from sandbox.runtime import Sandbox

__all__ = ["SandboxServer", "make_server"]

log = logging.getLogger(__name__)

DOCS = "docs/sandbox.md"
_API = re.compile(r"^(?:/[^/]+)*/QPay\.WebAPI/api/(Nonce|Order)/?$", re.IGNORECASE)
_ORDER = re.compile(r"^/sandbox/orders/([^/]+)(?:/(pay|expire))?/?$")
_PAGE = re.compile(r"^/sandbox/(card|atm)/([^/]+)/?$")
_SHOP_KEYS = re.compile(r"^/sandbox/shops/([A-Za-z0-9_]{1,20})/keys(?:/(retire))?/?$")


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        super().__init__(address, Handler)

    def server_close(self) -> None:
        self.sandbox.close()
        super().server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that vanished (a worker killed mid-call resets its connection) is no error."""
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


def make_server(sandbox: Sandbox) -> SandboxServer:
    return SandboxServer((sandbox.config.host, sandbox.config.port), sandbox)


class Handler(AdminRoutes):
    """The routes: the bank's API and the customer pages here, the admin API in sandbox.admin."""

    def do_GET(self) -> None:
        self._route([
            ("/", lambda: self._json(200, {"service": "QPay sandbox bank", "docs": DOCS})),
            ("/sandbox/faults", lambda: self._json(200, self.sb.faults.snapshot())),
            ("/sandbox/stats", lambda: self._json(200, self.sb.bank.stats())),
            ("/sandbox/shops", lambda: self._json(200, self.sb.bank.shop_views())),
            (_ORDER, self._order_view),
            (_PAGE, self._page_get),
        ])

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        self._route([
            (_API, self._api),
            ("/sandbox/faults", self._faults_post),
            ("/sandbox/reset", self._reset),
            (_SHOP_KEYS, self._shop_keys),
            (_ORDER, self._order_post),
            (_PAGE, self._page_post),
        ])

    # -- the bank's API --------------------------------------------------------------------------

    def _api(self, endpoint: str) -> None:
        body = self._json_body_or_error()
        if body is None:
            return
        nonce = endpoint.lower() == "nonce"
        service = "Nonce" if nonce else body.get("APIService") if isinstance(body, dict) else None
        service = service if isinstance(service, str) and service else "Unknown"
        self.sb.bank.count(service)
        shop_no = body.get("ShopNo") if isinstance(body, dict) else None
        decision = self.sb.faults.decide(service, order_call=not nonce, shop_no=shop_no)
        if decision.latency and self.sb.stopping.wait(decision.latency):
            return self._drop()
        if decision.action and not decision.after:
            return self._apply(decision, None)
        reply = self._nonce(body) if nonce else self._order(body)
        if decision.action:
            return self._apply(decision, reply)
        return self._json(200, reply)

    def _json_body_or_error(self) -> Any:
        try:
            return self._json_body()
        except BadRequest as exc:
            self.close_connection = True
            self._json(exc.status, wire.error_body(f"E9001 – 請求格式錯誤 ({exc})"))
            return None

    def _nonce(self, body: Any) -> dict[str, Any]:
        shop_no = body.get("ShopNo") if isinstance(body, dict) else None
        try:
            wire.check_key_id(self.sb.bank, shop_no, self.headers.get("X-KeyID"))
        except wire.EnvelopeError as exc:
            self.sb.bank.count_outcome("envelope_error")
            return wire.error_body(exc.description, shop_no=shop_no, service="Nonce")
        assert isinstance(shop_no, str)
        return {"Nonce": self.sb.bank.issue_nonce(shop_no)}

    def _order(self, body: Any) -> dict[str, Any]:
        try:
            shop, service, message = wire.open_request(self.sb.bank, body, self.headers.get("X-KeyID"))
        except wire.EnvelopeError as exc:
            self.sb.bank.count_outcome("envelope_error")
            get = body.get if isinstance(body, dict) else (lambda _k: "")
            return wire.error_body(exc.description, shop_no=get("ShopNo"), service=get("APIService"))
        if shop.key_id != self.sb.bank.shops[shop.shop_no].key_id:
            self.sb.bank.count_outcome("previous_keys")  # a key change in progress: the old set still works
        inner = self.sb.order_call(shop, service, message, misdirect=self.sb.faults.misdirected())
        self.sb.bank.count_outcome("ok" if inner.get("Status") == "S" else "rejected")
        return wire.seal_reply(wire.reply_keys(self.sb.bank, shop), service, inner)

    def _apply(self, decision: Decision, reply: dict[str, Any] | None) -> None:
        self.sb.bank.count_outcome(f"fault_{decision.action}")
        if decision.action == "error":
            try:
                phrase = HTTPStatus(decision.status).phrase
            except ValueError:
                phrase = ""
            self._html(decision.status, f"<html><body><h1>{decision.status} {phrase}</h1></body></html>")
        elif decision.action == "hang":
            self.sb.stopping.wait(decision.hang_seconds)
            self._drop()
        elif decision.action == "drop":
            self._drop()
        elif decision.action == "html":
            # What a bank in maintenance serves: a 200 that is no API answer at all.
            self._html(200, pages.maintenance_page())
        elif decision.action == "malformed":
            data = json.dumps(reply or {"Status": "F"}, ensure_ascii=False).encode("utf-8")
            self._send(200, data[: len(data) // 2], "application/json; charset=utf-8")
        elif decision.action == "bad_sign" and reply is not None:
            if "Sign" in reply:
                reply = {**reply, "Sign": ("0" if reply["Sign"][0] != "0" else "1") + reply["Sign"][1:]}
            self._json(200, reply)

    # -- customer pages ----------------------------------------------------------------------------

    def _page_order(self, kind: str, order_no: str) -> tuple[Any, str] | None:
        key = parse_qs(urlsplit(self.path).query).get("TK", [""])[0]
        try:
            order = self.sb.bank.order(order_no, page_key=key)
        except PayError:
            order = None
        if order is None or (order.pay_type == "C") != (kind == "card") or key != order.page_key:
            self._html(404, pages.message_page("Not found", "This payment link is not valid."))
            return None
        return order, key

    def _page_get(self, kind: str, order_no: str) -> None:
        found = self._page_order(kind, order_no)
        if found is not None:
            view = self.sb.view(order_no, found[0].shop_no) or {}
            self._html(200, pages.payment_page(found[0], self.path, str(view.get("PayStatus", ""))))

    def _page_post(self, kind: str, order_no: str) -> None:
        form = parse_qs(self._body().decode("utf-8", "replace"))
        found = self._page_order(kind, order_no)
        if found is None:
            return
        outcome = form.get("outcome", [""])[0]
        if outcome not in ("paid", "failed"):
            return self._html(400, pages.message_page("Bad request", "Choose Pay or Decline."))
        try:
            order, payment = self.sb.pay(order_no, succeeded=outcome == "paid", page_key=found[1],
                                         shop_no=found[0].shop_no)
        except PayError as exc:
            return self._html(exc.status, pages.message_page("Payment not possible", str(exc)))
        if kind == "card":
            return self._html(200, pages.return_form(order.return_url, order.shop_no, payment.pay_token))
        text = f"Order {order_no} is paid. Thank you."
        return self._html(200, pages.message_page("Transfer received", text))
