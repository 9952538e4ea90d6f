"""Fixtures for the sandbox bank tests: a real `python -m sandbox` process, the project's client
pointed at it, a scriptable BackendURL receiver, and helpers to send hand-made envelopes."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from core.settings import load_settings
from core.sinopac import crypto, envelope
from core.sinopac.client import QPayClient
from core.sinopac.messages import OrderCreateRequest
from core.sinopac.timefmt import BANK_TZ
from core.variables import SANDBOX_HASH_KEYS, SANDBOX_KEY_ID, SANDBOX_SHOP_NO
from tests.support.poll import wait_for
from tests.support.procs import Proc, base_env, start_sandbox

HASH_ID = crypto.hash_id(*SANDBOX_HASH_KEYS)
FAST = ("--resend-interval", "0.05", "--callback-timeout", "1")

pytestmark = pytest.mark.integration


class Sandbox:
    """A running sandbox process and the admin calls the tests make."""

    def __init__(self, proc: Proc, base: str) -> None:
        self.proc = proc
        self.base = base
        self.api = f"{base}/QPay.WebAPI/api/"
        self.http = requests.Session()

    def get(self, path: str) -> requests.Response:
        return self.http.get(self.base + path, timeout=10)

    def post(self, path: str, body: Any = None) -> requests.Response:
        return self.http.post(self.base + path, json=body if body is not None else {}, timeout=10)

    def faults(self, **patch: Any) -> dict[str, Any]:
        response = self.post("/sandbox/faults", patch)
        assert response.status_code == 200, response.text
        return response.json()

    def pay(self, order_no: str, outcome: str = "paid") -> dict[str, Any]:
        response = self.post(f"/sandbox/orders/{order_no}/pay", {"outcome": outcome})
        assert response.status_code == 200, response.text
        return response.json()

    def order(self, order_no: str) -> dict[str, Any]:
        response = self.get(f"/sandbox/orders/{order_no}")
        assert response.status_code == 200, response.text
        return response.json()

    def payment(self, order_no: str) -> dict[str, Any]:
        return self.order(order_no)["payments"][-1]

    def wait_payment(
        self, order_no: str, check: Callable[[dict[str, Any]], bool], message: str, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Poll the order's last payment until `check` accepts it; returns that payment."""

        def ready() -> dict[str, Any] | None:
            payment = self.payment(order_no)
            return payment if check(payment) else None

        found = wait_for(ready, timeout=timeout, message=message)
        assert found is not None
        return found

    def wait_callback(self, order_no: str, state: str, timeout: float = 10.0) -> dict[str, Any]:
        return self.wait_payment(order_no, lambda p: p["callback"] == state,
                                 f"callback of {order_no} to become {state}", timeout)


def start(*args: str, **env: str) -> Sandbox:
    proc, base = start_sandbox(base_env(**env), None, *args)
    return Sandbox(proc, base)


@pytest.fixture(scope="module")
def sandbox_proc() -> Iterator[Sandbox]:
    """One sandbox per test module, with a fast resend interval for the callback tests."""
    sandbox = start(*FAST)
    yield sandbox
    sandbox.proc.stop()


@pytest.fixture
def sandbox(sandbox_proc: Sandbox) -> Sandbox:
    """The module's sandbox, emptied and with no faults, for one test."""
    assert sandbox_proc.post("/sandbox/reset").status_code == 200
    return sandbox_proc


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[QPayClient]:
    settings = load_settings({"QPAY_API_BASE_URL": sandbox.api, "QPAY_READ_TIMEOUT": "2",
                              "QPAY_CONNECT_TIMEOUT": "2"})
    with QPayClient(settings) as qpay:
        yield qpay


@dataclass
class Receiver:
    """A shop's BackendURL: answers with the scripted replies in turn (the last one repeats)."""

    replies: list[tuple[int, str]] = field(default_factory=lambda: [(200, '{"Status":"S"}')])
    received: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def next_reply(self, body: dict[str, Any]) -> tuple[int, str]:
        with self.lock:
            self.received.append(body)
            index = min(len(self.received), len(self.replies)) - 1
            return self.replies[index]

    def count(self) -> int:
        with self.lock:
            return len(self.received)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, text = state.next_reply(json.loads(raw))
            data = text.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/qpay/backend"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def in_days(days: int) -> date:
    return datetime.now(BANK_TZ).date() + timedelta(days=days)


def create_atm(client: QPayClient, order_no: str, backend_url: str = "http://127.0.0.1:9/backend",
               amount: int = 50000) -> Any:
    return client.create_order(OrderCreateRequest(
        order_no=order_no, amount=amount, pay_type="A", product_name="測試商品",
        return_url="http://127.0.0.1:9/return", backend_url=backend_url, expire_date=in_days(3)))


def create_card(client: QPayClient, order_no: str, backend_url: str = "http://127.0.0.1:9/backend",
                amount: int = 12300) -> Any:
    return client.create_order(OrderCreateRequest(
        order_no=order_no, amount=amount, pay_type="C", product_name="卡片商品",
        return_url="http://127.0.0.1:9/return", backend_url=backend_url))


def nonce(sandbox: Sandbox, shop_no: str = SANDBOX_SHOP_NO, key_id: str = SANDBOX_KEY_ID) -> str:
    reply = requests.post(sandbox.api + "Nonce", json={"ShopNo": shop_no}, headers={"X-KeyID": key_id},
                          timeout=10).json()
    return str(reply["Nonce"])


def raw_order(sandbox: Sandbox, body: dict[str, Any], key_id: str = SANDBOX_KEY_ID) -> requests.Response:
    return requests.post(sandbox.api + "Order", json=body, headers={"X-KeyID": key_id}, timeout=10)


def sealed(sandbox: Sandbox, service: str, message: dict[str, Any], hash_id: str = HASH_ID) -> dict[str, str]:
    return envelope.seal_request(service, message, shop_no=SANDBOX_SHOP_NO, nonce=nonce(sandbox),
                                 hash_id=hash_id)


def opened(response: requests.Response, hash_id: str = HASH_ID) -> dict[str, Any]:
    """The verified inner reply (Status S or F), checked exactly as a client checks it."""
    body = response.json()
    inner = crypto.decrypt_message(body["Message"], hash_id, body["Nonce"])
    assert crypto.verify_sign(inner, body["Nonce"], hash_id, body["Sign"])
    return inner
