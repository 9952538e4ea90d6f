"""HTTP routing for the sandbox: the bank's API, the customer pages and the /sandbox admin API.

The standard library's ThreadingHTTPServer (one thread per connection, HTTP/1.1 keep-alive) is used
rather than Flask: the sandbox needs raw control of the connection to inject faults (hold it open,
close it without a reply, send half a body), it starts in a blink, and it has no framework coupling
with the webhook it is meant to exercise. Shared state lives in Bank, behind its lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from core.settings import SettingsError
from sandbox import pages, wire
from sandbox.bank import PayError
from sandbox.config import shop_from_keys
from sandbox.faults import Decision, FaultError
from sandbox.runtime import Sandbox

__all__ = ["SandboxServer", "make_server"]

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20
DOCS = "docs/sandbox.md"
_API = re.compile(r"^(?:/[^/]+)*/QPay\.WebAPI/api/(Nonce|Order)/?$", re.IGNORECASE)
_ORDER = re.compile(r"^/sandbox/orders/([^/]+)(?:/(pay|expire))?/?$")
_PAGE = re.compile(r"^/sandbox/(card|atm)/([^/]+)/?$")
_SHOP_KEYS = re.compile(r"^/sandbox/shops/([A-Za-z0-9_]{1,20})/keys(?:/(retire))?/?$")


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


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


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small keep-alive replies must not wait for delayed ACKs
    server: SandboxServer
    server_version = "QPaySandbox/1.0"

    @property
    def sb(self) -> Sandbox:
        return self.server.sandbox

    def log_message(self, format: str, *args: Any) -> None:
        if self.sb.config.access_log:
            log.info("%s %s", self.address_string(), format % args)

    # -- plumbing ------------------------------------------------------------------------------

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise BadRequest(411, "send a Content-Length (chunked bodies are not supported)")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise BadRequest(400, "Content-Length is not a number") from None
        if length < 0 or length > MAX_BODY:
            raise BadRequest(413, f"body larger than {MAX_BODY} bytes")
        return self.rfile.read(length) if length else b""

    def _json_body(self) -> Any:
        raw = self._body()
        try:
            return json.loads(raw.decode("utf-8-sig")) if raw.strip() else {}
        except (UnicodeDecodeError, ValueError):
            raise BadRequest(400, "body is not UTF-8 JSON") from None

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self._send(status, data, "application/json; charset=utf-8")

    def _html(self, status: int, text: str) -> None:
        self._send(status, text.encode("utf-8"), "text/html; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _drop(self) -> None:
        """Close the connection without a reply (what a crashed or unplugged bank looks like)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _route(self, routes: list[tuple[re.Pattern[str] | str, Any]]) -> None:
        path = urlsplit(self.path).path
        try:
            for pattern, handler in routes:
                if isinstance(pattern, str):
                    if path == pattern or path == pattern + "/":
                        return handler()
                elif match := pattern.match(path):
                    return handler(*[unquote(g) if g else g for g in match.groups()])
            self._error(404, f"no route {self.command} {path}")
        except BadRequest as exc:
            self.close_connection = True  # the body may not have been read
            self._error(exc.status, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:
            log.exception("sandbox handler failed for %s %s", self.command, path)
            self.close_connection = True
            self._error(500, "internal sandbox error (see its log)")
        return None

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

    # -- admin API ---------------------------------------------------------------------------------

    def _faults_post(self) -> None:
        patch = self._json_body()
        try:
            self._json(200, self.sb.faults.update(patch))
        except FaultError as exc:
            self._error(400, str(exc))

    def _shop_keys(self, shop_no: str, action: str | None) -> None:
        """A key change at the bank: new keys for a shop (the old ones stay accepted unless
        keep_previous is false), or `/retire` to stop accepting the previous set."""
        body = self._json_body()
        try:
            if action == "retire":
                return self._json(200, self.sb.bank.retire_previous_keys(shop_no))
            if not isinstance(body, dict):
                return self._error(400, "send a JSON object: the new a1, a2, b1, b2 and key_id")
            keep, reply_with = body.get("keep_previous", True), body.get("reply_with", "current")
            if not isinstance(keep, bool) or reply_with not in ("current", "request"):
                return self._error(400, 'keep_previous: true or false; reply_with: "current" or "request"')
            return self._json(200, self.sb.bank.change_keys(shop_from_keys(shop_no, body),
                                                            keep_previous=keep, reply_with=reply_with))
        except SettingsError as exc:
            return self._error(400, str(exc))
        except KeyError:
            return self._error(404, f"no shop {shop_no}")

    def _reset(self) -> None:
        self._body()
        self.sb.reset()
        self._json(200, {"reset": True})

    def _shop_arg(self) -> str | None:
        """`?shop=<ShopNo>`: which shop's order, when two shops use one OrderNo."""
        return parse_qs(urlsplit(self.path).query).get("shop", [""])[0] or None

    def _order_view(self, order_no: str, action: str | None) -> None:
        if action:
            return self._error(405, f"use POST for /{action}")
        try:
            view = self.sb.view(order_no, self._shop_arg())
        except PayError as exc:
            return self._error(exc.status, str(exc))
        if view is None:
            return self._error(404, f"no order {order_no}")
        return self._json(200, view)

    def _order_post(self, order_no: str, action: str | None) -> None:
        body = self._json_body()
        if action is None:
            return self._error(405, "use GET to view an order")
        shop = self._shop_arg()
        try:
            if action == "expire":
                expired = self.sb.bank.expire(order_no, shop)
                return self._json(200, self.sb.view(order_no, expired.shop_no))
            outcome = body.get("outcome") if isinstance(body, dict) else None
            if outcome not in ("paid", "failed"):
                return self._error(400, 'send {"outcome": "paid"} or {"outcome": "failed"}')
            order, payment = self.sb.pay(order_no, succeeded=outcome == "paid", shop_no=shop)
        except PayError as exc:
            return self._error(exc.status, str(exc))
        reply: dict[str, Any] = {"OrderNo": order_no, "PayToken": payment.pay_token, "outcome": outcome,
                                 "PayStatus": (self.sb.view(order_no, order.shop_no) or {}).get("PayStatus")}
        if order.pay_type == "C":
            reply["return"] = {"url": order.return_url,
                               "form": {"ShopNo": order.shop_no, "PayToken": payment.pay_token}}
        return self._json(200, reply)

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
