"""A real stack for the worker tests: a fresh PostgreSQL database, a private Redis, the sandbox bank,
a stand-in for the webhook's callback view, and real `celery -A workers` processes.

The stand-in does what the webhook does (record the PayToken, commit, enqueue by task name, answer
{"Status":"S"}) so these tests exercise the workers and nothing else.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from celery import Celery
from sqlalchemy import select

from core.db import dispose_engines, transaction
from core.models import BankCall, Order, OrderEvent, PayToken, SweepRun
from core.queues import CALLBACK_QUEUE, RESOLVE_TASK, SWEEP_QUEUE, SWEEP_TASK
from core.services.callbacks import record_callback
from core.services.orders import NewOrder, create_order
from core.settings import Settings, load_settings
from core.sinopac.client import QPayClient
from tests.support import procs, services
from tests.support.poll import wait_for

FAST = {
    "RESOLVE_RETRY_BASE": "0.2",
    "RESOLVE_RETRY_CAP": "1.5",
    "RESOLVE_MAX_RETRIES": "5",
    "QPAY_CONNECT_TIMEOUT": "2",
    "QPAY_READ_TIMEOUT": "20",
    "SWEEP_GRACE": "1",
    "LOG_LEVEL": "INFO",
}


class CallbackReceiver:
    """POST /qpay/backend: record, commit, enqueue, answer S (the webhook's four steps)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        handler = partial(_Handler, self)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.received: list[str] = []
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def handle(self, body: dict[str, Any]) -> None:
        with transaction(self.stack.db_url) as session:
            rec = record_callback(session, shop_no=body["ShopNo"], pay_token=body["PayToken"],
                                  source="backend")
        self.received.append(body["PayToken"])
        if rec.needs_enqueue:
            self.stack.enqueue_resolve(rec.token_id)


class _Handler(BaseHTTPRequestHandler):
    def __init__(self, receiver: CallbackReceiver, *args: Any) -> None:
        self.receiver = receiver
        super().__init__(*args)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.receiver.handle(body)
        payload = b'{"Status":"S"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Stack:
    db_url: str
    redis: services.TempRedis
    sandbox_url: str = ""
    env: dict[str, str] = field(default_factory=dict)
    procs: list[procs.Proc] = field(default_factory=list)
    settings: Settings | None = None
    sender: Celery | None = None
    receiver: CallbackReceiver | None = None

    # -- processes -------------------------------------------------------------------------------

    def start_worker(self, name: str = "w1", **kw: Any) -> procs.Proc:
        proc = procs.start_worker(self.env, name=name, **kw)
        self.procs.append(proc)
        return proc

    def start_beat(self) -> procs.Proc:
        proc = procs.start_beat(self.env)
        self.procs.append(proc)
        return proc

    def stop_workers(self) -> None:
        for proc in self.procs:
            if proc.name.startswith("worker-"):
                proc.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log()[-3000:]}" for p in self.procs)

    # -- the bank ----------------------------------------------------------------------------------

    def faults(self, **patch: Any) -> None:
        r = requests.post(f"{self.sandbox_url}/sandbox/faults", json={"clear": True, **patch}, timeout=5)
        assert r.status_code == 200, r.text

    def create_order(self, pay_type: str = "A", amount_twd: int = 500) -> str:
        assert self.settings is not None
        with QPayClient(self.settings) as client, transaction(self.db_url) as session:
            order = create_order(session, client, self.settings, NewOrder(amount_twd, pay_type, "green tea"))
            return order.order_no

    def pay(self, order_no: str) -> str:
        r = requests.post(f"{self.sandbox_url}/sandbox/orders/{order_no}/pay", json={"outcome": "paid"},
                          timeout=5)
        assert r.status_code == 200, r.text
        return str(r.json()["PayToken"])

    def stats(self) -> dict[str, Any]:
        return dict(requests.get(f"{self.sandbox_url}/sandbox/stats", timeout=5).json())

    # -- the broker --------------------------------------------------------------------------------

    def enqueue_resolve(self, token_id: int) -> None:
        assert self.sender is not None
        self.sender.send_task(RESOLVE_TASK, args=[token_id], queue=CALLBACK_QUEUE)

    def enqueue_sweep(self) -> None:
        assert self.sender is not None
        self.sender.send_task(SWEEP_TASK, queue=SWEEP_QUEUE)

    # -- the database ------------------------------------------------------------------------------

    def status(self, order_no: str) -> str:
        with transaction(self.db_url) as s:
            return str(s.scalar(select(Order.status).where(Order.order_no == order_no)))

    def wait_status(self, order_no: str, status: str, timeout: float = 30) -> None:
        try:
            wait_for(lambda: self.status(order_no) == status, timeout=timeout, interval=0.1,
                     message=f"order {order_no} to be {status}")
        except TimeoutError as exc:
            raise AssertionError(f"{exc} (it is {self.status(order_no)})\n{self.logs()}") from exc

    def events(self, order_no: str) -> list[OrderEvent]:
        with transaction(self.db_url) as s:
            return list(s.scalars(select(OrderEvent).where(OrderEvent.order_no == order_no)
                                  .order_by(OrderEvent.id)))

    def token(self, pay_token: str) -> PayToken | None:
        with transaction(self.db_url) as s:
            return s.scalars(select(PayToken).where(PayToken.pay_token == pay_token)).first()

    def bank_calls(self, service: str, key_prefix: str = "") -> list[BankCall]:
        with transaction(self.db_url) as s:
            stmt = select(BankCall).where(BankCall.api_service == service).order_by(BankCall.started_at)
            if key_prefix:
                stmt = stmt.where(BankCall.key.startswith(key_prefix))
            return list(s.scalars(stmt))

    def sweep_runs(self) -> list[SweepRun]:
        with transaction(self.db_url) as s:
            return list(s.scalars(select(SweepRun).order_by(SweepRun.id)))


@pytest.fixture(scope="module")
def make_stack() -> Iterator[Any]:
    """Builds stacks (`make_stack(**env)`) and tears all of them down after the module."""
    admin = services.ensure_default_postgres()
    built: list[tuple[Stack, str]] = []

    def build(sandbox_args: tuple[str, ...] = ("--resend-interval", "1"), **env: str) -> Stack:
        db_url = services.create_database(admin)
        redis = services.TempRedis().start()
        stack = Stack(db_url=db_url, redis=redis)
        built.append((stack, db_url))
        sandbox, stack.sandbox_url = procs.start_sandbox(procs.base_env(), None, *sandbox_args)
        stack.procs.append(sandbox)
        stack.receiver = CallbackReceiver(stack)
        stack.receiver.thread.start()
        stack.env = procs.base_env(
            DATABASE_URL=db_url,
            REDIS_URL=redis.url,
            QPAY_API_BASE_URL=f"{stack.sandbox_url}/QPay.WebAPI/api/",
            PUBLIC_BASE_URL=stack.receiver.url,
            **{**FAST, **env},
        )
        stack.settings = load_settings(stack.env)
        stack.sender = Celery("qpay-test-sender", broker=redis.url, set_as_current=False)
        stack.sender.conf.update(task_serializer="json", broker_connection_retry_on_startup=True)
        return stack

    yield build
    for stack, db_url in built:
        for proc in reversed(stack.procs):
            proc.stop()
        if stack.receiver:
            stack.receiver.server.shutdown()
        if stack.sender:
            stack.sender.close()
        stack.redis.__exit__(None, None, None)
        dispose_engines()
        services.drop_database(db_url)
