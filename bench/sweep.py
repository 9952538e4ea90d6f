"""bench/sweep: one sweep pass over tables of 10k, 100k and 1M orders, 1% of them pending.

For each size, a fresh PostgreSQL database is bulk-loaded with COPY (99% settled orders, 1% pending
and due, resolved PayTokens for a tenth of the orders plus 10 stragglers past the grace period), then
ANALYZEd. Three passes of the real `core.services.sweep.run_sweep` are timed and their SQL statements
counted (a before_cursor_execute listener on the engine the sweep uses):
  due=1%    every pending order is due: the pass's work grows with the pending orders;
  due=50    only 50 pending orders are due (the rest were just checked): same work at every size;
  idle      nothing is due: the fixed cost of a pass.
If the cost follows the due work, not the table, the due=50 and idle rows are flat across sizes and
the due=1% row grows 10x per step together with its due count, at a flat cost per order.

The bank is an in-process fake (FakeBank below), not the sandbox: loading 10k pending orders into the
sandbox through OrderCreate would dominate the run, and here we measure our side (the database), so
bank time is zero unless `--sweep-bank-latency` gives each OrderQuery a time (a sleep), and no budget
applies unless `--sweep-bank-rate` sets one. Its calls are counted; one in ten pending orders is
reported paid. The CPU column is this process's CPU time over the pass per due order.
"""

from __future__ import annotations

import argparse
import io
import math
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
from sqlalchemy import event

from bench import cli, harness
from core.budget import LocalBudget
from core.sinopac.messages import OrderCreateRequest, OrderQueryRequest
from core.sinopac.timefmt import to_bank_minute
from core.sinopac.types import OrderCreateResult, OrderQueryResult, OrderQueryRow, PayQueryResult

SHOP = harness.SANDBOX_SHOP_NO
STRAGGLERS = 10
FIXED_DUE = 50  # below the pending left at 10k after one in ten was paid
PAID_EVERY = 10


class FakeBank:
    """OrderQuery answers from a dict of the pending orders; bulk windows find nothing new.

    `latency`: seconds each OrderQuery takes (a sleep, no CPU: a real call is a Nonce and an Order
    request). `budget`: the bank request budget, two slots per call like the real client's.
    """

    def __init__(self, pending: dict[str, tuple[int, str]], now: datetime, *, latency: float = 0.0,
                 budget: LocalBudget | None = None) -> None:
        self.pending = pending
        self.calls = 0
        self.expire = to_bank_minute(now + timedelta(days=3))
        self.pay_date = to_bank_minute(now - timedelta(minutes=5))
        self.latency = latency
        self.budget = budget
        self._lock = threading.Lock()

    def query_orders(self, request: OrderQueryRequest) -> OrderQueryResult:
        order_no = request.order_no
        with self._lock:
            self.calls += 1
        if self.budget is not None:
            self.budget.acquire()  # the Nonce request
            self.budget.acquire()  # the Order request
        if self.latency:
            time.sleep(self.latency)  # the bank's answer time, simulated
        rows: tuple[OrderQueryRow, ...] = ()
        if order_no is not None and order_no in self.pending:
            amount, ts_no = self.pending[order_no]
            paid = int(order_no[1:]) % (PAID_EVERY * 100) == 0
            rows = (OrderQueryRow(order_no=order_no, ts_no=ts_no, amount=amount, pay_type="A",
                                  pay_status="1A400" if paid else "1A200",
                                  pay_date=self.pay_date if paid else "", expire_date=self.expire),)
        return OrderQueryResult(shop_no=SHOP, date=to_bank_minute(datetime.now(UTC)), status="S",
                                description="S0000 – 處理成功", orders=rows)

    def pay_query(self, pay_token: str) -> PayQueryResult:  # not used by the sweep
        raise NotImplementedError

    def create_order(self, request: OrderCreateRequest) -> OrderCreateResult:  # not used by the sweep
        raise NotImplementedError

    def close(self) -> None:
        pass


@dataclass
class Pass:
    size: int
    label: str
    due: int
    seconds: float
    queries: int
    bank_calls: int
    counts: dict[str, int]
    shapes: Counter[str] = field(default_factory=Counter)
    cpu_seconds: float = 0.0  # this process's CPU over the pass (the sweep's side: ORM, driver, Python)

    @property
    def cpu_ms_per_due(self) -> float:
        return self.cpu_seconds * 1000 / self.due if self.due else math.nan

    @property
    def ms_per_due(self) -> float:
        return self.seconds * 1000 / self.due if self.due else math.nan


@dataclass
class SweepReport:
    passes: list[Pass] = field(default_factory=list)
    load_seconds: dict[int, float] = field(default_factory=dict)
    bank_latency_ms: float = 0.0
    bank_rate: float = 0.0
    concurrency: int = 0

    def markdown(self) -> str:
        budget = "none" if self.bank_rate <= 0 else f"{self.bank_rate:g} requests/s (2 per call)"
        lines = [
            "### sweep (one pass of core.services.sweep.run_sweep; fake bank, real PostgreSQL)",
            "",
            f"fake bank: {self.bank_latency_ms:g} ms per OrderQuery; bank budget: {budget}; "
            f"SWEEP_CONCURRENCY {self.concurrency}",
            "",
            "| orders | pending | pass | due | seconds | SQL statements | bank calls | ms per due order "
            "| CPU ms per due order |",
            "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        for p in self.passes:
            per = "—" if math.isnan(p.ms_per_due) else f"{p.ms_per_due:.2f}"
            cpu = "—" if math.isnan(p.cpu_ms_per_due) else f"{p.cpu_ms_per_due:.2f}"
            lines.append(f"| {p.size:,} | {p.size // 100:,} | {p.label} | {p.due:,} | {p.seconds:.3f} | "
                         f"{p.queries:,} | {p.bank_calls:,} | {per} | {cpu} |")
        biggest = max((p for p in self.passes if p.label == "due=1%"), key=lambda p: p.size, default=None)
        if biggest is not None and biggest.due:
            lines += ["", f"statements of the due=1% pass at {biggest.size:,} orders, per due order:", ""]
            for shape, n in biggest.shapes.most_common(10):
                if n * 100 < biggest.due:
                    continue  # per-pass statements (claims, window, run row), not per order
                lines.append(f"- {n / biggest.due:.2f} × `{shape}`")
        loads = ", ".join(f"{n:,}: {s:.1f} s" for n, s in self.load_seconds.items())
        lines += ["", f"bulk load (COPY + ANALYZE): {loads}"]
        return "\n".join(lines)


def _ts(value: datetime) -> str:
    return value.isoformat()


def _order_rows(size: int, now: datetime) -> Iterator[tuple[str, ...]]:
    """Rows for COPY: every 100th order pending and due, the rest paid (a few expired)."""
    created = _ts(now - timedelta(hours=2))
    due_at = _ts(now - timedelta(minutes=1))
    expires = _ts(now + timedelta(days=3))
    paid_at = _ts(now - timedelta(hours=1))
    for i in range(1, size + 1):
        order_no = f"B{i:09d}"
        amount = str(10000 + (i % 1000) * 100)
        ts_no = f"NA0001{i:010d}"
        if i % 100 == 0:
            yield (SHOP, order_no, amount, "TWD", "A", "bench", "pending", ts_no, r"\N", r"\N", expires,
                   r"\N", due_at, "0", created, created)
        else:
            status = "expired" if i % 37 == 0 else "paid"
            paid = paid_at if status == "paid" else r"\N"
            yield (SHOP, order_no, amount, "TWD", "A", "bench", status, ts_no, f"tok{i:061d}",
                   f"99922{i:09d}", expires, paid, r"\N", "1", created, created)


ORDER_COLUMNS = ("shop_no, order_no, amount, currency, pay_type, product_name, status, ts_no, pay_token, "
                 "atm_pay_no, expires_at, paid_at, next_check_at, check_attempts, created_at, updated_at")
TOKEN_COLUMNS = ("shop_no, pay_token, source, receipts, first_received_at, last_received_at, state, "
                 "attempts, resolved_at, order_no")


def _token_rows(size: int, now: datetime) -> Iterator[tuple[str, ...]]:
    old = _ts(now - timedelta(hours=1))
    for i in range(1, size + 1, 10):  # resolved tokens for a tenth of the orders
        yield (SHOP, f"tok{i:061d}", "backend", "1", old, old, "resolved", "1", old, f"B{i:09d}")
    for j in range(STRAGGLERS):  # stored, never resolved, past the grace period
        yield (SHOP, f"straggler{j:055d}", "backend", "1", old, old, "received", "0", r"\N", r"\N")


def _copy(cur: Any, table: str, columns: str, rows: Iterator[tuple[str, ...]], chunk: int = 200_000) -> None:
    buf = io.StringIO()
    for n, row in enumerate(rows, start=1):
        buf.write("\t".join(row))
        buf.write("\n")
        if n % chunk == 0:
            buf.seek(0)
            cur.copy_expert(f"COPY {table} ({columns}) FROM STDIN", buf)
            buf = io.StringIO()
    buf.seek(0)
    cur.copy_expert(f"COPY {table} ({columns}) FROM STDIN", buf)


def load(url: str, size: int, now: datetime) -> float:
    t0 = time.perf_counter()
    conn = psycopg2.connect(harness.dsn(url))
    with conn, conn.cursor() as cur:
        _copy(cur, "orders", ORDER_COLUMNS, _order_rows(size, now))
        _copy(cur, "pay_tokens", TOKEN_COLUMNS, _token_rows(size, now))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE orders")
        cur.execute("VACUUM ANALYZE pay_tokens")
    conn.close()
    return time.perf_counter() - t0


def _pending(size: int) -> dict[str, tuple[int, str]]:
    return {f"B{i:09d}": (10000 + (i % 1000) * 100, f"NA0001{i:010d}") for i in range(100, size + 1, 100)}


def _make_due(url: str, limit: int, at: datetime) -> int:
    with psycopg2.connect(harness.dsn(url)) as conn, conn.cursor() as cur:
        cur.execute("UPDATE orders SET next_check_at = %s WHERE id IN (SELECT id FROM orders WHERE status ="
                    " 'pending' ORDER BY id LIMIT %s)", (at, limit))
        return int(cur.rowcount)


def _due_count(url: str, at: datetime) -> int:
    with psycopg2.connect(harness.dsn(url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM orders WHERE status = 'pending' AND next_check_at <= %s", (at,))
        row = cur.fetchone()
        return int(row[0]) if row else 0


def _shape(sql: str) -> str:
    """A statement without its literals and column lists: what kind of query it is."""
    text = re.sub(r"\s+", " ", sql).strip()
    text = re.sub(r"^SELECT .*? FROM", "SELECT … FROM", text)
    text = re.sub(r"SET .*? WHERE", "SET … WHERE", text)
    text = re.sub(r"\(.*?\) VALUES .*", "(…) VALUES …", text)
    return text[:120]


def measure_size(size: int, report: SweepReport, *, latency: float = 0.0, bank_rate: float = 0.0,
                 concurrency: int = 16) -> None:
    from core.db import dispose_engines, session_factory, transaction
    from core.services.sweep import run_sweep
    from core.settings import load_settings

    now = datetime.now(UTC)
    with harness.database() as url:
        report.load_seconds[size] = load(url, size, now)
        settings = load_settings({"DATABASE_URL": url, "QPAY_API_BASE_URL": "http://127.0.0.1:9/api/",
                                  "SWEEP_CONCURRENCY": str(concurrency)})
        engine = session_factory(url).kw["bind"]
        statements = [0]
        shapes: Counter[str] = Counter()

        @event.listens_for(engine, "before_cursor_execute")
        def _count(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
            statements[0] += 1
            shapes[_shape(sql)] += 1

        bank = FakeBank(_pending(size), now, latency=latency,
                        budget=LocalBudget(bank_rate) if bank_rate > 0 else None)
        enqueued: list[int] = []

        def enqueue(token_id: int) -> bool:  # the sweep's Enqueue: True = the broker took it
            enqueued.append(token_id)
            return True

        try:
            plan = [("due=1%", now, None), ("idle", now + timedelta(seconds=1), None),
                    (f"due={FIXED_DUE}", now + timedelta(seconds=2), FIXED_DUE)]
            for label, at, make_due in plan:
                if make_due is not None:
                    _make_due(url, make_due, at - timedelta(minutes=1))
                due = _due_count(url, at)
                statements[0] = 0
                shapes.clear()
                bank.calls = 0
                t0, cpu0 = time.perf_counter(), time.process_time()
                counts = run_sweep(lambda: transaction(url), bank, settings, enqueue, now=at)
                seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
                report.passes.append(Pass(size, label, due, seconds, statements[0], bank.calls,
                                          counts.as_dict(), Counter(shapes), cpu))
                print(f"  {size:>9,} orders  {label:8s} due {due:>6,}  {seconds:7.3f} s  "
                      f"{statements[0]:>6,} statements  {bank.calls:>6,} bank calls  {counts.as_dict()}",
                      flush=True)
        finally:
            event.remove(engine, "before_cursor_execute", _count)
            dispose_engines()


def run(sizes: list[int], *, latency_ms: float = 0.0, bank_rate: float = 0.0, concurrency: int = 16
        ) -> SweepReport:
    report = SweepReport(bank_latency_ms=latency_ms, bank_rate=bank_rate, concurrency=concurrency)
    for size in sizes:
        measure_size(size, report, latency=latency_ms / 1000, bank_rate=bank_rate, concurrency=concurrency)
    return report


def summary_line(report: SweepReport) -> str:
    parts = []
    for label in ("idle", f"due={FIXED_DUE}"):
        times = ", ".join(f"{p.seconds * 1000:.0f} ms" for p in report.passes if p.label == label)
        parts.append(f"{label}: {times}")
    per = ", ".join(f"{p.ms_per_due:.2f}" for p in report.passes if p.label == "due=1%")
    sizes = "/".join(f"{s // 1000}k" for s in report.load_seconds)
    return f"sweep over {sizes} orders: " + "; ".join(parts) + f"; due=1% ms per due order: {per}"


def add_arguments(parser: argparse.ArgumentParser, *, full: bool = False) -> None:
    default = "10000,100000,1000000" if full else "10000,100000"
    parser.add_argument("--sizes", default=default, help=f"comma-separated table sizes (default {default})")
    parser.add_argument("--sweep-bank-latency", type=float, default=0.0,
                        help="ms each OrderQuery of the fake bank takes (default 0)")
    parser.add_argument("--sweep-bank-rate", type=float, default=0.0,
                        help="bank request budget in requests/s, 2 per OrderQuery (default 0: none)")
    parser.add_argument("--sweep-concurrency", type=int, default=16,
                        help="SWEEP_CONCURRENCY for the passes (default 16, the setting's default)")


def from_args(args: argparse.Namespace) -> SweepReport:
    return run([int(s) for s in args.sizes.split(",") if s.strip()], latency_ms=args.sweep_bank_latency,
               bank_rate=args.sweep_bank_rate, concurrency=args.sweep_concurrency)


if __name__ == "__main__":
    cli.run_part(sys.modules[__name__], full_help="include 1M orders")
