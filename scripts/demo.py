"""`make demo`: the whole pipeline, end to end, with no external service, in about two minutes.

It starts the local stack (embedded Redis, SQLite in var/demo.db made fresh, the sandbox bank,
gunicorn, a Celery worker, beat and Flower), creates a mixed batch of orders through the orders API,
has the sandbox bank pay, decline, drop callbacks, fail calls and expire orders, shows progress while
the pipeline resolves them, then prints how each order got to its final state. A small shop endpoint
(scripts/shop.py, holding only SHOP_WEBHOOK_SECRET) receives the order events and verifies every
signature with the `standardwebhooks` package. Exit 0 only if every order ended where the bank says it
should, each settled exactly once, and the shop was notified of each order's final state.

Demo-only shortcut: a real unpaid ATM order expires at the end of its last payment day and a card
link after ExpMinutes (the order's optional expire_minutes, 30 by default). To show expiry within the
demo, the sandbox's operator endpoint (`POST /sandbox/orders/<no>/expire`) makes the bank report those
orders overdue now; the pipeline then finds them through its ordinary sweep, exactly as it would on
the day.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.pool import NullPool

from core.endpoints import broker_url_from, normalize_database_url
from core.logging import short_token
from core.models import BankCall, Order, OrderEvent, PayToken
from core.webhook_signing import new_secret
from scripts.shop import ShopEndpoint
from scripts.stack import PROJECT_DIR, Stack, StackConfig, StackError

VAR = PROJECT_DIR / "var"
DEMO_DB = VAR / "demo.db"
STACK_LOG = VAR / "demo-stack.log"
DEADLINE = 150.0  # seconds for the pipeline to settle everything (the whole demo stays under 3 min)

NOTIFY_WAIT = 20.0  # seconds after the last order change for the shop to hear of every final state
# Short timings so the sweep and retries act within seconds instead of minutes.
DEMO_ENV = {
    "SHOP_WEBHOOK_RETRY_BASE": "1",
    "SHOP_WEBHOOK_RETRY_CAP": "5",
    "SWEEP_INTERVAL": "8",
    "SWEEP_GRACE": "5",
    "SWEEP_WINDOW_OVERLAP": "600",
    "CHECK_SCHEDULE": "4,4,6,8,10",
    "RESOLVE_RETRY_BASE": "0.5",
    "RESOLVE_RETRY_CAP": "4",
    "RESOLVE_MAX_RETRIES": "5",
    "QPAY_CONNECT_TIMEOUT": "2",
    "QPAY_READ_TIMEOUT": "5",
    "LOG_LEVEL": "INFO",
    "FLOWER_ALLOW_NO_AUTH": "1",  # Flower listens on 127.0.0.1 only, for this run only
}


# -- the cases --------------------------------------------------------------------------------------


@dataclass
class Case:
    """One order of the batch: how the customer and the bank behave, and where it must end."""

    key: str
    pay_type: str  # A | C
    amount: int  # TWD
    story: str
    expected: str  # final status
    outcome: str | None = None  # sandbox pay outcome: paid | failed (declined); None = never paid
    notify: bool = True  # False: the bank never calls BackendURL (a dropped callback)
    browser_return: bool = False  # the customer's browser comes back to ReturnURL
    fail_first: int = 0  # the first N OrderPayQuery calls fail (503) before the bank answers
    duplicate: bool = False  # the bank sends the callback twice
    expire: bool = False  # the bank declares it overdue (demo shortcut, see module docstring)
    order_no: str = ""
    pay_token: str = ""


def cases() -> list[Case]:
    return [
        Case("atm-paid", "A", 1200, "ATM transfer, callback", "paid", "paid"),
        Case("card-paid", "C", 880, "card payment, callback", "paid", "paid"),
        Case("card-declined", "C", 450, "card declined, callback", "failed", "failed"),
        Case("card-retry", "C", 2300, "card paid; the bank fails the first 2 queries", "paid", "paid",
             fail_first=2),
        Case("atm-dropped", "A", 640, "ATM paid; the bank never sends the callback", "paid", "paid",
             notify=False),
        Case("card-dropped", "C", 975, "card paid; callback lost, browser gone too", "paid", "paid",
             notify=False),
        Case("card-return", "C", 310, "card paid; only the browser comes back", "paid", "paid",
             notify=False, browser_return=True),
        Case("atm-duplicate", "A", 1500, "ATM paid; the bank sends the callback twice", "paid", "paid",
             duplicate=True),
        Case("atm-expired", "A", 720, "ATM never paid; past its payment period", "expired", expire=True),
        Case("atm-waiting", "A", 560, "ATM not paid yet, still within its period", "pending"),
    ]


# -- talking to the system ---------------------------------------------------------------------------


class Shop:
    """The shop backend (orders API) and the customer's browser."""

    def __init__(self, web_url: str, api_token: str) -> None:
        self.web_url = web_url
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {api_token}"

    def create_order(self, case: Case) -> str:
        resp = self.http.post(f"{self.web_url}/api/orders", timeout=20, json={
            "amount": case.amount, "pay_type": case.pay_type, "product_name": f"demo {case.key}"})
        if resp.status_code not in (200, 201):
            raise DemoError(f"creating order {case.key}: HTTP {resp.status_code} {resp.text[:300]}")
        return str(resp.json()["order_no"])

    def browser_return(self, form: dict[str, str]) -> None:
        resp = requests.post(f"{self.web_url}/qpay/return", data=form, timeout=10, allow_redirects=False)
        if resp.status_code >= 500:
            raise DemoError(f"ReturnURL answered HTTP {resp.status_code}")


class Bank:
    """The sandbox's customer and operator endpoints (docs/sandbox.md)."""

    def __init__(self, base_url: str) -> None:
        self.base = f"{base_url}/sandbox"
        self.http = requests.Session()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = self.http.post(f"{self.base}{path}", json=body, timeout=10)
        if resp.status_code != 200:
            raise DemoError(f"sandbox {path}: HTTP {resp.status_code} {resp.text[:300]}")
        return dict(resp.json()) if resp.content else {}

    def faults(self, **settings: Any) -> None:
        self._post("/faults", settings)

    def fault_settings(self) -> dict[str, Any]:
        return dict(self.http.get(f"{self.base}/faults", timeout=5).json())

    def clear_faults(self) -> None:
        self._post("/faults", {"clear": True})

    def pay(self, order_no: str, outcome: str) -> dict[str, Any]:
        """The customer pays (outcome paid) or the card is declined (failed); returns PayToken and form."""
        return self._post(f"/orders/{order_no}/pay", {"outcome": outcome})

    def expire(self, order_no: str) -> None:
        self._post(f"/orders/{order_no}/expire", {})

    def view(self, order_no: str) -> dict[str, Any]:
        resp = self.http.get(f"{self.base}/orders/{order_no}", timeout=10)
        resp.raise_for_status()
        return dict(resp.json())

    def callback_state(self, order_no: str) -> str:
        payments = self.view(order_no).get("payments") or [{}]
        return str(payments[-1].get("callback", ""))


class DemoError(RuntimeError):
    """The demo could not drive the system (as opposed to the system settling an order wrongly)."""


# -- reading the outcome from the database -----------------------------------------------------------


@dataclass
class Verdict:
    case: Case
    status: str
    path: str
    settled_moves: int
    ok: bool
    notified: str = ""
    notes: list[str] = field(default_factory=list)


def how(engine: Engine, case: Case) -> tuple[str, str, int]:
    """(status, how it got there, moves out of pending) from order_events, pay_tokens and bank_calls."""
    with engine.connect() as conn:
        status = conn.execute(select(Order.status).where(Order.order_no == case.order_no)).scalar_one()
        events = conn.execute(select(OrderEvent.from_status, OrderEvent.to_status, OrderEvent.source,
                                     OrderEvent.detail)
                              .where(OrderEvent.order_no == case.order_no,
                                     OrderEvent.from_status.is_not(None))
                              .order_by(OrderEvent.id)).all()
        tokens = conn.execute(select(PayToken.pay_token, PayToken.source, PayToken.receipts,
                                     PayToken.attempts).where(PayToken.order_no == case.order_no)).all()
        keys = [short_token(t.pay_token) for t in tokens]
        failed_calls = conn.execute(select(BankCall.id).where(BankCall.key.in_(keys),
                                                              BankCall.outcome != "ok")).all() if keys else []
    if not events:
        return status, "no change (still waiting at the bank)", 0
    source = events[-1].source
    label = {"backend": "callback", "return": "browser return", "sweep": "sweep", "operator": "operator"}
    parts = [label.get(source, source)]
    if failed_calls:
        parts.append(f"after retry ({len(failed_calls)} failed bank call{'s' * (len(failed_calls) > 1)})")
    receipts = sum(t.receipts for t in tokens)
    if receipts > 1:
        parts.append(f"{receipts} receipts of the token, settled once")
    if source == "sweep" and not tokens:
        parts.append("OrderQuery, no callback")
    if events[-1].detail and events[-1].to_status != "paid":
        parts.append(events[-1].detail)
    return status, ", ".join(parts), len(events)


def bank_truth(view: dict[str, Any]) -> str | None:
    """What the bank's own state says the order must end as (None: it does not say)."""
    state = str(view.get("state", "")).lower()
    return {"paid": "paid", "declined": "failed", "expired": "expired", "unpaid": "pending"}.get(state)


# -- the run -----------------------------------------------------------------------------------------


def out(text: str = "") -> None:
    print(text, flush=True)


def fresh_database() -> str:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{DEMO_DB}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{DEMO_DB}"


def drive(cases_: list[Case], shop: Shop, bank: Bank) -> None:
    """Create every order, then let customers and the bank act, one behaviour at a time.

    The sandbox's faults are global, so each misbehaviour is switched on just for its own payment
    and off again once it has happened; the retry case goes first, before other queries could
    consume its failures.
    """
    out(f"creating {len(cases_)} orders through POST /api/orders ...")
    for case in cases_:
        case.order_no = shop.create_order(case)
        out(f"  {case.order_no}  {case.key:<14} {'ATM ' if case.pay_type == 'A' else 'card'} "
            f"TWD {case.amount:>5}  {case.story}")
    out("\ncustomers pay, the bank misbehaves ...")
    paid: list[Case] = []
    for case in sorted(cases_, key=lambda c: not c.fail_first):
        faults: dict[str, Any] = {}
        if case.fail_first:
            faults.update(fail_next=case.fail_first, fail_next_action="error", fail_next_status=503,
                          services=["OrderPayQuery"])
        if not case.notify:
            faults["drop_callback_rate"] = 1.0
        if case.duplicate:
            faults["duplicate_callback_rate"] = 1.0
        if faults:
            # Callbacks still on their way would catch this case's fault too: let them land first.
            wait_quietly(lambda: all(bank.callback_state(c.order_no) != "pending" for c in paid), 15)
            bank.faults(**faults)
        if case.outcome:
            paid.append(case)
            reply = bank.pay(case.order_no, case.outcome)
            case.pay_token = str(reply.get("PayToken", ""))
            form = (reply.get("return") or {}).get("form")
            if case.browser_return and form:
                shop.browser_return(form)
        if case.expire:
            bank.expire(case.order_no)
        if faults:
            if case.notify:
                def delivered(order_no: str = case.order_no) -> bool:
                    return bank.callback_state(order_no) not in ("pending", "")

                wait_quietly(delivered, 15)
            if case.fail_first:
                wait_quietly(lambda: bank.fault_settings().get("fail_next") == 0, 20)
            bank.clear_faults()


def wait_quietly(check: Callable[[], object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except (requests.RequestException, ValueError, KeyError):
            pass
        time.sleep(0.2)  # pacing between polls
    return False


def watch(engine: Engine, cases_: list[Case], flower_url: str, started: float) -> None:
    """Print each order change as it happens and a status line, until every case is where it belongs."""
    by_no = {c.order_no: c for c in cases_}
    seen = 0
    last_line = ""
    deadline = time.monotonic() + DEADLINE
    last_flower = 0.0
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            rows = conn.execute(select(OrderEvent.id, OrderEvent.order_no, OrderEvent.from_status,
                                       OrderEvent.to_status, OrderEvent.source)
                                .where(OrderEvent.id > seen, OrderEvent.from_status.is_not(None),
                                       OrderEvent.order_no.in_(list(by_no)))
                                .order_by(OrderEvent.id)).all()
            statuses = dict(conn.execute(select(Order.order_no, Order.status)
                                         .where(Order.order_no.in_(list(by_no)))).all())
        for row in rows:
            seen = max(seen, row.id)
            case = by_no[row.order_no]
            out(f"  [{time.monotonic() - started:5.1f}s] {case.key:<14} {row.from_status} -> {row.to_status}"
                f"  (by {row.source})")
        counts = Counter(statuses.values())
        line = "  ".join(f"{s} {counts[s]}" for s in ("pending", "paid", "failed", "expired", "needs_review")
                         if counts[s])
        if line != last_line:
            out(f"  [{time.monotonic() - started:5.1f}s] {line}")
            last_line = line
        if time.monotonic() - last_flower > 30:
            out(f"  (watch the tasks in Flower: {flower_url})")
            last_flower = time.monotonic()
        if all(statuses.get(c.order_no) == c.expected for c in cases_):
            return
        time.sleep(0.5)  # pacing between polls


def shop_heard(shop: ShopEndpoint, case: Case, status: str) -> str | None:
    """What the shop was last told of this order, if it is `status` in a verified delivery; else None."""
    heard = shop.events_of(case.order_no)
    if not heard:
        return None
    last = heard[-1]
    data = last["data"]
    if data["to_status"] != status or data["order"]["status"] != status or last["type"] != f"order.{status}":
        return None
    return str(last["id"])


def wait_for_shop(shop: ShopEndpoint, cases_: list[Case], engine: Engine) -> None:
    """Give the pushes a moment to catch up with the last order changes."""
    def heard_all() -> bool:
        with engine.connect() as conn:
            statuses = dict(conn.execute(select(Order.order_no, Order.status)
                                         .where(Order.order_no.in_([c.order_no for c in cases_]))).all())
        return all(shop_heard(shop, c, statuses[c.order_no]) for c in cases_)

    if not wait_quietly(heard_all, NOTIFY_WAIT):
        out(f"  (the shop still misses some final states after {NOTIFY_WAIT:.0f}s)")


def judge(engine: Engine, bank: Bank, cases_: list[Case], shop: ShopEndpoint) -> list[Verdict]:
    verdicts = []
    for case in cases_:
        status, path, moves = how(engine, case)
        notes = []
        event_id = shop_heard(shop, case, status)
        if event_id is None:
            notes.append(f"the shop was not notified of {status}")
        truth = bank_truth(bank.view(case.order_no))
        if truth is not None and truth != status:
            notes.append(f"the bank says {truth}")
        if status != case.expected:
            notes.append(f"expected {case.expected}")
        if moves > 1:
            notes.append(f"moved {moves} times")
        verdicts.append(Verdict(case, status, path, moves, ok=not notes,
                                notified=event_id or "MISSING", notes=notes))
    return verdicts


def report(verdicts: list[Verdict], shop: ShopEndpoint) -> bool:
    out("\nreport: every order, its final status, how it got there, and the shop's notification of it")
    out(f"  {'order':<26} {'case':<14} {'status':<9} {'shop told':<10} how")
    for v in verdicts:
        mark = "ok " if v.ok else "WRONG"
        extra = f"  <- {'; '.join(v.notes)}" if v.notes else ""
        out(f"  {mark} {v.case.order_no:<22} {v.case.key:<14} {v.status:<9} {v.notified:<10} {v.path}{extra}")
    wrong = [v for v in verdicts if not v.ok]
    lost = [v for v in wrong if "the bank says paid" in v.notes]
    out(f"\n{len(verdicts)} orders: {len(verdicts) - len(wrong)} right, {len(wrong)} wrong, {len(lost)} lost "
        "(paid at the bank but not here)")
    received, bad = shop.received(), shop.unverified()
    out(f"shop endpoint: {len(received)} deliveries received, {len(received) - len(bad)} verified "
        f"(standardwebhooks), {len(bad)} failed verification")
    return not wrong and not bad


def main() -> int:
    t0 = time.monotonic()
    api_token = secrets.token_hex(16)
    shop_endpoint = ShopEndpoint(new_secret(), port=int(os.environ.get("SHOP_PORT", "0"))).start()
    env = {**DEMO_ENV, "API_TOKEN": api_token, "SHOP_WEBHOOK_URL": shop_endpoint.url,
           "SHOP_WEBHOOK_SECRET": shop_endpoint.secret, "CHECKOUT_SECRET": secrets.token_hex(32)}
    database_url = normalize_database_url(os.environ.get("DATABASE_URL") or fresh_database())
    config = StackConfig(
        database_url=database_url,
        redis_url=broker_url_from(os.environ),
        web_port=int(os.environ.get("WEB_PORT", "8000")),
        sandbox_port=int(os.environ.get("SANDBOX_PORT", "8100")),
        flower_port=int(os.environ.get("FLOWER_PORT", "5555")),
        sandbox_args="--resend-interval 2",
        extra_env=env,
        beat_schedule=VAR / "demo-celerybeat-schedule",
    )
    VAR.mkdir(exist_ok=True)
    log = open(STACK_LOG, "wb")  # noqa: SIM115 - honcho writes it while the stack runs
    stack = Stack(config, output=log)
    engine = create_engine(database_url, poolclass=NullPool)
    ok = False
    try:
        stack.check_ports()
        out(f"broker:   {stack.start_redis()}")
        out(f"database: {'var/demo.db (fresh)' if database_url.endswith('demo.db') else 'DATABASE_URL'}")
        stack.migrate()
        out("starting sandbox bank, web (gunicorn), worker, beat and Flower with honcho "
            f"(logs: {STACK_LOG.relative_to(PROJECT_DIR)}) ...")
        stack.start_processes()
        stack.wait_ready(lambda: STACK_LOG.read_text(errors="replace"), timeout=60)
        out(f"ready in {time.monotonic() - t0:.0f}s:  web {config.web_url}  sandbox {config.sandbox_url}  "
            f"Flower {config.flower_url}  metrics {config.metrics_urls()}\n"
            f"  shop endpoint (order events, verified) {shop_endpoint.url}\n")
        batch = cases()
        bank = Bank(config.sandbox_url)
        drive(batch, Shop(config.web_url, api_token), bank)
        out(f"\nthe pipeline resolves them (callbacks, retries, sweeps every {DEMO_ENV['SWEEP_INTERVAL']}s); "
            f"Flower: {config.flower_url}")
        watch(engine, batch, config.flower_url, t0)
        wait_for_shop(shop_endpoint, batch, engine)
        ok = report(judge(engine, bank, batch, shop_endpoint), shop_endpoint)
    except (StackError, DemoError, requests.RequestException) as exc:
        out(f"\ndemo failed: {exc}")
        tail = STACK_LOG.read_text(errors="replace")[-3000:] if STACK_LOG.exists() else ""
        if tail:
            out(f"--- last lines of {STACK_LOG.relative_to(PROJECT_DIR)} ---\n{tail}")
    except KeyboardInterrupt:
        out("\ninterrupted")
    finally:
        out("\nstopping every process ...")
        stack.stop()
        shop_endpoint.stop()
        engine.dispose()
        log.close()
        out(f"done in {time.monotonic() - t0:.0f}s: {'all orders right' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
