"""A scriptable stand-in for the bank: a real threaded HTTP server on 127.0.0.1 (port 0).

It speaks the real protocol (fresh nonce per Nonce call, sealed replies with their own nonce), and a
test swaps `on_order` to make it misbehave in one specific way.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from core.sinopac import crypto


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    client_port: int


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"


OrderHandler = Callable[[str, dict[str, Any]], Reply]  # (APIService, decrypted request) -> Reply


def new_nonce() -> str:
    return base64.b64encode(f"63840000000000.1:{secrets.token_hex(32)}".encode()).decode()


def json_reply(obj: Any, status: int = 200) -> Reply:
    return Reply(status=status, body=json.dumps(obj, ensure_ascii=False).encode("utf-8"))


class _Server(ThreadingHTTPServer):
    # socketserver's listen backlog is 5: sixteen callers connecting at once on a loaded machine
    # would see dropped SYNs and one-second retransmits, not the behaviour under test.
    request_queue_size = 128


@dataclass
class StubBank:
    hash_id: str
    base_url: str = ""
    seen: list[Seen] = field(default_factory=list)
    nonces_issued: list[str] = field(default_factory=list)
    on_order: OrderHandler | None = None
    on_nonce: Callable[[], Reply] | None = None
    release: threading.Event = field(default_factory=threading.Event)

    # -- replies the real bank would send ----------------------------------------------------

    def sealed(
        self,
        service: str,
        inner: dict[str, Any],
        *,
        nonce: str | None = None,
        encrypt_nonce: str | None = None,
        sign: str | None = None,
    ) -> Reply:
        """A reply envelope; `encrypt_nonce` / `sign` let a test break exactly one thing."""
        nonce = nonce or new_nonce()
        envelope = {
            "Version": "1.0.0",
            "ShopNo": inner.get("ShopNo", "NA0001_001"),
            "APIService": service,
            "Sign": sign if sign is not None else crypto.sign(inner, nonce, self.hash_id),
            "Nonce": nonce,
            "Message": crypto.encrypt_message(inner, self.hash_id, encrypt_nonce or nonce),
        }
        return json_reply(envelope)

    def default_inner(self, service: str, request: dict[str, Any]) -> dict[str, Any]:
        ok = {"Status": "S", "Description": "S0000 – 處理成功"}
        if service == "OrderCreate":
            inner: dict[str, Any] = {
                "OrderNo": request["OrderNo"],
                "ShopNo": request["ShopNo"],
                "TSNo": "NA000100000123",
                "Amount": request["Amount"],
                **ok,
                "PayType": request["PayType"],
            }
            if request["PayType"] == "A":
                inner["ATMParam"] = {
                    "AtmPayNo": "99922530000123",
                    "WebAtmURL": "https://bank.example/PayWebATM?TD=NA000100000123",
                    "OtpURL": "https://bank.example/PayOTP?TD=NA000100000123",
                }
            else:
                inner["CardParam"] = {"CardPayURL": "https://bank.example/PayCard?TD=NA000100000124"}
            return inner
        if service == "OrderQuery":
            return {
                "ShopNo": request["ShopNo"],
                "Date": "202401021530",
                **ok,
                "OrderList": [
                    {
                        "OrderNo": request.get("OrderNo", "ATM20240101001"),
                        "TSNo": "NA000100000123",
                        "TSDate": "202401011200",
                        "PayDate": "202401021528",
                        "Amount": 123400,
                        "PayType": "A",
                        "PayStatus": "1A400",
                        "ExpireDate": "202401102359",
                        "RefundFlag": "N",
                    }
                ],
            }
        if service == "OrderPayQuery":
            return {
                "ShopNo": request["ShopNo"],
                "PayToken": request["PayToken"],
                "Date": "202401021530",
                **ok,
                "TSResultContent": {
                    "APType": "PayOut",
                    "TSNo": "NA000100000123",
                    "OrderNo": "ATM20240101001",
                    "ShopNo": request["ShopNo"],
                    "PayType": "A",
                    "Amount": "123400",
                    "Status": "S",
                    "Description": "",
                    "PayDate": "202401021528",
                },
            }
        raise AssertionError(f"unexpected service {service}")

    # -- plumbing ----------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> Reply:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        body = json.loads(raw.decode("utf-8")) if raw else {}
        self.seen.append(Seen(handler.path, dict(handler.headers.items()), body, handler.client_address[1]))
        if handler.path.endswith("/Nonce"):
            if self.on_nonce is not None:
                return self.on_nonce()
            nonce = new_nonce()
            self.nonces_issued.append(nonce)
            return json_reply({"Nonce": nonce})
        if handler.path.endswith("/Order"):
            try:
                request = crypto.decrypt_message(body["Message"], self.hash_id, body["Nonce"])
            except crypto.CryptoError:  # signed with keys this bank does not hold (now)
                return json_reply({"Status": "F", "Description": "E9005 decrypt error"})
            if not crypto.verify_sign(request, body["Nonce"], self.hash_id, body["Sign"]):
                return json_reply({"Status": "F", "Description": "E9001 sign error"})
            service = body["APIService"]
            if self.on_order is not None:
                return self.on_order(service, request)
            return self.sealed(service, self.default_inner(service, request))
        return Reply(status=404, body=b"not found", content_type="text/plain")

    def serve(self) -> tuple[ThreadingHTTPServer, threading.Thread]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is observable

            def do_POST(self) -> None:
                reply = stub._handle(self)
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = _Server(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        return server, thread

    def hang(self) -> Reply:
        """Hold the reply until the test ends: the client's read timeout must fire first."""
        self.release.wait(timeout=10)
        return json_reply({})
