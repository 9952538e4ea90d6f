"""The whole system as real processes: sandbox bank, gunicorn web, Celery workers and beat (and Flower).

One `Stack` is one consistent deployment: every process gets the same environment (database, broker,
bank URL, shop keys, short retry and sweep timings). Tests drive it the way the world does: the shop
creates orders through the orders API, customers pay at the sandbox bank, the bank pushes callbacks,
and the tests read the outcome from the database. Everything is stopped on exit, even on failure.

    with Stack(database_url, broker_url, workers=1, beat=True) as stack:
        order_no = stack.create_order(500)
        stack.pay(order_no)
        stack.wait_final([order_no])
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from core.sinopac.crypto import hash_id
from tests.support.poll import wait_for
from tests.support.procs import BIN, Proc, base_env, http_ok, start_beat, start_web, start_worker
from tests.support.services import free_port

FINAL_STATES = frozenset({"paid", "failed", "expired", "needs_review"})
_RESOLVED = re.compile(r"token \d+ resolved: ")


def resolved_task_ids(log: str) -> list[str]:
    """The task ids of the resolve tasks a worker's JSON log says it ran to the end (its own line,
    `token N resolved: <kind>`, carries the task id): which worker consumed which message."""
    ids = []
    for line in log.splitlines():
        if not line.startswith("{") or "resolved: " not in line:
            continue
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and _RESOLVED.match(str(record.get("msg"))) and record.get("task_id"):
                ids.append(str(record["task_id"]))
    return ids
API_PATH = "/QPay.WebAPI/api/"
TOKEN_SQL = ("SELECT pay_token, shop_no, source, receipts, state, attempts, last_error, order_no "
             "FROM pay_tokens")


@dataclass(frozen=True)
class ShopKeys:
    """Non-default shop credentials, so that a secrets scan of the logs means something."""

    shop_no: str
    hash_keys: tuple[str, str, str, str]
    key_id: str

    def __repr__(self) -> str:  # test reports are logs too
        return f"ShopKeys(shop_no={self.shop_no!r}, hash_keys=***, key_id=***)"

    @classmethod
    def random(cls) -> ShopKeys:
        keys = tuple(secrets.token_hex(8).upper() for _ in range(4))
        return cls(f"FT{secrets.randbelow(10**6):06d}_001", keys, secrets.token_hex(16))  # type: ignore[arg-type]

    @property
    def hash_id(self) -> str:
        return hash_id(*self.hash_keys)

    def env(self) -> dict[str, str]:
        names = ("QPAY_HASH_A1", "QPAY_HASH_A2", "QPAY_HASH_B1", "QPAY_HASH_B2")
        keys = dict(zip(names, self.hash_keys, strict=True))
        return {"QPAY_SHOP_NO": self.shop_no, "QPAY_KEY_ID": self.key_id, **keys}

    def keys_json(self) -> dict[str, str]:
        """The key set as QPAY_SHOPS (and the sandbox's control API) spell it."""
        return {**dict(zip(("a1", "a2", "b1", "b2"), self.hash_keys, strict=True)), "key_id": self.key_id}

    def shop_json(self, next_keys: ShopKeys | None = None) -> dict[str, object]:
        """This shop as one entry of QPAY_SHOPS, optionally with a `next` key set."""
        entry: dict[str, object] = {"shop_no": self.shop_no, **self.keys_json()}
        if next_keys is not None:
            entry["next"] = next_keys.keys_json()
        return entry

    def with_new_keys(self) -> ShopKeys:
        """The same shop with a fresh key set (a key change)."""
        fresh = ShopKeys.random()
        return ShopKeys(self.shop_no, fresh.hash_keys, fresh.key_id)

    def needles(self) -> dict[str, str]:
        """Every secret value a log must never contain, by name."""
        found = {f"hash key {i + 1}": k for i, k in enumerate(self.hash_keys)}
        found.update({"HashID": self.hash_id, "X-KeyID": self.key_id})
        return found


# Every process log of every Stack in this test session: the secrets scan reads them all.
ALL_LOGS: list[Path] = []


@dataclass
class Stack:
    """Sandbox + web + N workers (+ beat, + Flower) sharing one environment; a context manager."""

    database_url: str
    broker_url: str  # redis:// (also REDIS_URL) or amqp:// (tests/support/brokers.py)
    workers: int = 1
    beat: bool = False
    flower: bool = False
    keys: ShopKeys = field(default_factory=ShopKeys.random, repr=False)
    resend_interval: float = 0.5
    worker_concurrency: int = 2
    web_workers: int = 2
    extra_env: Mapping[str, str] = field(default_factory=dict)
    broker_kind: str = "redis"  # or "rabbitmq": what the broker URL is, for tests that differ by it

    def __post_init__(self) -> None:
        self.api_token = secrets.token_hex(16)
        self.checkout_secret = secrets.token_hex(32)
        self.flower_auth = f"ops:{secrets.token_hex(8)}"
        self.sandbox_port = free_port()
        self.web_port = free_port()
        self.flower_port = free_port()
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        self.flower_url = f"http://127.0.0.1:{self.flower_port}"
        self.env = base_env(
            DATABASE_URL=self.database_url,
            BROKER_URL=self.broker_url,
            REDIS_URL=self.broker_url,
            QPAY_API_BASE_URL=self.sandbox_url + API_PATH,
            API_TOKEN=self.api_token,
            CHECKOUT_SECRET=self.checkout_secret,
            PUBLIC_BASE_URL=self.web_url,
            QPAY_CONNECT_TIMEOUT="1",
            QPAY_READ_TIMEOUT="2",
            RESOLVE_RETRY_BASE="0.3",
            RESOLVE_RETRY_CAP="2",
            RESOLVE_MAX_RETRIES="5",
            SWEEP_INTERVAL="1",
            SWEEP_GRACE="3",
            SWEEP_WINDOW_OVERLAP="600",
            CHECK_SCHEDULE="1,1,2,2,3",
            CELERY_VISIBILITY_TIMEOUT="6",
            # Tests ask the bank far faster than a shop does; the flood test sets production's 10.
            QPAY_BANK_RATE="200",
            FLOWER_BASIC_AUTH=self.flower_auth,
            LOG_LEVEL="INFO",
            **self.keys.env(),
        )
        self.env.update(self.extra_env)
        self.procs: dict[str, Proc] = {}
        self.retired: list[Proc] = []  # processes a redeploy replaced (their logs still count)
        self._worker_seq = 0
        self._engine: Engine | None = None
        self.http = requests.Session()

    # --- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Stack:
        self._start_sandbox()
        self._start_app()
        if self.flower:
            self._start_flower()
        return self

    def _start_app(self) -> None:
        self._add(start_web(self.env, self.web_port, workers=self.web_workers)[0])
        for _ in range(self.workers):
            self.start_worker()
        if self.beat:
            self._add(start_beat(self.env))

    def redeploy(self, **env: str) -> None:
        """A deploy with a changed configuration: web, workers and beat stop and start again with
        `env` merged in (an empty value removes the variable); the bank keeps running."""
        for name in [n for n in self.procs if n != "sandbox" and n != "flower"]:
            proc = self.procs.pop(name)
            proc.stop(timeout=20)
            self.retired.append(proc)
        self.env.update(env)
        for name in [k for k, v in env.items() if v == ""]:
            del self.env[name]
        self._start_app()

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            with contextlib.suppress(Exception):
                proc.stop(timeout=10)
        if self._engine is not None:
            self._engine.dispose()
        self.http.close()

    def _add(self, proc: Proc) -> Proc:
        self.procs[proc.name] = proc
        ALL_LOGS.append(proc.log_path)
        return proc

    def _start_sandbox(self) -> None:
        argv = [sys.executable, "-m", "sandbox", "--host", "127.0.0.1", "--port", str(self.sandbox_port),
                "--resend-interval", str(self.resend_interval)]
        proc = self._add(Proc("sandbox", argv, self.env).start())
        proc.wait_ready(lambda: http_ok(f"{self.sandbox_url}/sandbox/faults"))

    def _start_flower(self) -> None:
        argv = [str(BIN / "celery"), "-A", "workers", "flower", "--conf=workers/flowerconfig.py",
                "--address=127.0.0.1", f"--port={self.flower_port}"]
        env = {**self.env, "FLOWER_PORT": str(self.flower_port)}  # the password comes from FLOWER_BASIC_AUTH
        proc = self._add(Proc("flower", argv, env).start())
        user, password = self.flower_auth.split(":", 1)
        proc.wait_ready(lambda: requests.get(f"{self.flower_url}/api/workers", auth=(user, password),
                                             timeout=2).status_code == 200, timeout=45)

    def start_worker(self) -> Proc:
        self._worker_seq += 1
        name = f"w{self._worker_seq}"
        return self._add(start_worker(self.env, name=name, concurrency=self.worker_concurrency))

    def worker_names(self) -> list[str]:
        return [n for n, p in self.procs.items() if n.startswith("worker-") and p.alive()]

    def kill_worker(self, name: str | None = None) -> None:
        """SIGKILL a worker's whole process group: a crash, not a shutdown."""
        self.procs[name or self.worker_names()[0]].kill()

    def restart_worker(self, name: str | None = None) -> Proc:
        proc = self.procs[name or self.worker_names()[0]]
        proc.stop(timeout=10)
        return self.start_worker()

    def logs(self) -> dict[str, str]:
        current = {name: proc.log() for name, proc in self.procs.items()}
        return {**{f"{p.name} (before redeploy {i})": p.log() for i, p in enumerate(self.retired)}, **current}

    # --- the shop --------------------------------------------------------------------------------

    def _api_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_token}"}

    def create_order(self, amount_twd: int = 500, pay_type: str = "A", shop_no: str | None = None) -> str:
        """A new order through the orders API (of `shop_no`, if given); returns its OrderNo."""
        return str(self.create_order_body(amount_twd, pay_type, shop_no=shop_no)["order_no"])

    def create_order_body(self, amount_twd: int = 500, pay_type: str = "A", product_name: str = "fault test",
                          shop_no: str | None = None) -> dict[str, Any]:
        """A new order through the orders API; the API's whole answer (checkout_url, atm_pay_no...)."""
        body: dict[str, Any] = {"amount": amount_twd, "pay_type": pay_type, "product_name": product_name}
        if shop_no is not None:
            body["shop_no"] = shop_no
        resp = self.http.post(f"{self.web_url}/api/orders", headers=self._api_headers(), timeout=15,
                              json=body)
        assert resp.status_code in (200, 201), f"create order: {resp.status_code} {resp.text[:500]}"
        return dict(resp.json())

    def create_orders(self, count: int, amount_twd: int = 500, pay_type: str = "A") -> list[str]:
        return [self.create_order(amount_twd + i, pay_type) for i in range(count)]

    def api_order(self, order_no: str) -> dict[str, Any]:
        resp = self.http.get(f"{self.web_url}/api/orders/{order_no}", headers=self._api_headers(), timeout=10)
        resp.raise_for_status()
        return dict(resp.json())

    def callback(self, pay_token: str, shop_no: str | None = None, *,
                 timeout: float = 10) -> requests.Response:
        """POST the BackendURL push exactly as the bank does."""
        body = {"ShopNo": self.keys.shop_no if shop_no is None else shop_no, "PayToken": pay_token}
        return requests.post(f"{self.web_url}/qpay/backend", json=body, timeout=timeout)

    def browser_return(self, pay_token: str, *, timeout: float = 10) -> requests.Response:
        """POST the ReturnURL form exactly as the customer's browser does."""
        form = {"ShopNo": self.keys.shop_no, "PayToken": pay_token}
        return requests.post(f"{self.web_url}/qpay/return", data=form, timeout=timeout, allow_redirects=False)

    def healthy(self) -> bool:
        return http_ok(f"{self.web_url}/healthz")

    # --- the bank (sandbox admin) ----------------------------------------------------------------

    def pay(self, order_no: str, outcome: str = "paid") -> str:
        """The customer pays (or is declined) at the bank, which then pushes the callback; the PayToken."""
        resp = self.http.post(f"{self.sandbox_url}/sandbox/orders/{order_no}/pay", timeout=10,
                              json={"outcome": outcome})
        assert resp.status_code == 200, f"sandbox pay {order_no}: {resp.status_code} {resp.text[:300]}"
        return str(resp.json()["PayToken"])

    def expire_at_bank(self, order_no: str) -> None:
        """The bank declares an unpaid order overdue now (the sandbox's operator shortcut)."""
        resp = self.http.post(f"{self.sandbox_url}/sandbox/orders/{order_no}/expire", timeout=10)
        assert resp.status_code == 200, f"sandbox expire {order_no}: {resp.status_code} {resp.text[:300]}"

    def event_feed(self, limit: int = 100, after: str = "") -> tuple[list[dict[str, Any]], str]:
        """Every event the pull feed gives, following `next` from `after` until a page is empty."""
        events: list[dict[str, Any]] = []
        while True:
            resp = self.http.get(f"{self.web_url}/api/events", params={"after": after, "limit": limit},
                                 headers=self._api_headers(), timeout=10)
            assert resp.status_code == 200, f"GET /api/events: {resp.status_code} {resp.text[:300]}"
            page = resp.json()
            events += page["events"]
            if not page["events"]:
                return events, str(page["next"])
            after = page["next"]

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """Merge fault settings into the sandbox's (docs/sandbox.md lists them)."""
        resp = self.http.post(f"{self.sandbox_url}/sandbox/faults", json=faults, timeout=10)
        assert resp.status_code == 200, f"sandbox faults: {resp.status_code} {resp.text[:300]}"
        return dict(resp.json())

    def clear_faults(self) -> None:
        self.set_faults(clear=True)

    def bank_view(self, order_no: str) -> dict[str, Any]:
        """The bank's view of an order: its payments and every callback attempt."""
        resp = self.http.get(f"{self.sandbox_url}/sandbox/orders/{order_no}", timeout=10)
        resp.raise_for_status()
        return dict(resp.json())

    def pay_token_of(self, order_no: str) -> str:
        return str(self.bank_view(order_no)["payments"][-1]["PayToken"])

    def callback_attempts(self, order_no: str) -> list[dict[str, Any]]:
        """The bank's sends of the last payment's callback: http_status, acknowledged, error."""
        payments = self.bank_view(order_no)["payments"]
        return list(payments[-1]["attempts"]) if payments else []

    def bank_calls_received(self, service: str | None = None) -> int:
        """Calls the sandbox received for a service, or for all (counted on arrival, before any delay)."""
        resp = self.http.get(f"{self.sandbox_url}/sandbox/stats", timeout=10)
        resp.raise_for_status()
        calls = resp.json()["calls"]
        return int(sum(calls.values()) if service is None else calls.get(service, 0))

    # --- the database ----------------------------------------------------------------------------

    @property
    def db(self) -> Engine:
        # NullPool: no connection outlives a query, so stopping PostgreSQL leaves nothing stale here.
        if self._engine is None:
            self._engine = create_engine(self.database_url, poolclass=NullPool)
        return self._engine

    def _rows(self, sql: str, **params: Any) -> list[Any]:
        with self.db.connect() as conn:
            return list(conn.execute(text(sql), params))

    def statuses(self, order_nos: Iterable[str]) -> dict[str, str]:
        nos = list(order_nos)
        rows = self._rows("SELECT order_no, status FROM orders WHERE order_no = ANY(:nos)", nos=nos)
        return {r.order_no: r.status for r in rows}

    def status(self, order_no: str) -> str | None:
        return self.statuses([order_no]).get(order_no)

    def transitions(self, order_nos: Iterable[str]) -> dict[str, int]:
        """Order changes per order (events with a from-status; creation is not a change)."""
        nos = list(order_nos)
        rows = self._rows("SELECT order_no, count(*) AS n FROM order_events WHERE order_no = ANY(:nos) "
                          "AND from_status IS NOT NULL GROUP BY order_no", nos=nos)
        counts = {no: 0 for no in nos}
        counts.update({r.order_no: int(r.n) for r in rows})
        return counts

    def events(self, order_no: str) -> list[Any]:
        return self._rows("SELECT from_status, to_status, source, ts_no, amount, detail FROM order_events "
                          "WHERE order_no = :no ORDER BY id", no=order_no)

    def shop_events(self, order_nos: Iterable[str] | None = None) -> list[Any]:
        """The notification outbox (id, order_no, type, state, attempts, body), by id."""
        sql = "SELECT id, order_no, type, state, attempts, body, created_at FROM shop_events"
        if order_nos is None:
            return self._rows(sql + " ORDER BY id")
        return self._rows(sql + " WHERE order_no = ANY(:nos) ORDER BY id", nos=list(order_nos))

    def delivery_attempts(self, event_id: int) -> list[Any]:
        return self._rows("SELECT attempt, http_status, error, duration_ms FROM shop_event_attempts "
                          "WHERE event_id = :id ORDER BY attempt, id", id=event_id)

    def pay_tokens(self, order_no: str | None = None) -> list[Any]:
        if order_no is None:
            return self._rows(TOKEN_SQL + " ORDER BY id")
        return self._rows(TOKEN_SQL + " WHERE order_no = :no ORDER BY id", no=order_no)

    def token_row(self, pay_token: str) -> Any | None:
        rows = self._rows(TOKEN_SQL + " WHERE pay_token = :t", t=pay_token)
        return rows[0] if rows else None

    def count(self, table: str) -> int:
        assert table in {"orders", "pay_tokens", "order_events", "bank_calls", "shop_events"}
        return int(self._rows(f"SELECT count(*) AS n FROM {table}")[0].n)  # noqa: S608 - fixed names

    def bank_call_outcomes(self) -> dict[str, int]:
        rows = self._rows("SELECT outcome, count(*) AS n FROM bank_calls GROUP BY outcome")
        return {r.outcome: int(r.n) for r in rows}

    def set_amount(self, order_no: str, amount: int) -> None:
        """Rewrite the stored amount (×100): the way to make the bank's word disagree with ours."""
        with self.db.begin() as conn:
            conn.execute(text("UPDATE orders SET amount = :a WHERE order_no = :no"),
                         {"a": amount, "no": order_no})

    def wait_final(self, order_nos: Iterable[str], timeout: float = 60) -> dict[str, str]:
        """Poll until every order is in a final state (or needs_review); returns their statuses."""
        nos = list(order_nos)

        def settled() -> dict[str, str] | None:
            current = self.statuses(nos)
            return current if all(current.get(n) in FINAL_STATES for n in nos) else None

        try:
            result = wait_for(settled, timeout=timeout, interval=0.25, message=f"{len(nos)} orders to settle")
        except TimeoutError as exc:
            stuck: object = "?"
            with contextlib.suppress(Exception):  # the database itself may be what is down
                stuck = {n: s for n, s in self.statuses(nos).items() if s not in FINAL_STATES}
            raise TimeoutError(f"{exc}; still open: {stuck}\n{self.tail_logs()}") from exc
        assert result is not None
        return result

    def tail_logs(self, chars: int = 2500) -> str:
        return "\n".join(f"--- {name} ---\n{text_[-chars:]}" for name, text_ in self.logs().items())

