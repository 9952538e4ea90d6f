"""bench/drain: how fast K worker processes resolve N stored callbacks against the sandbox bank.

Setup (not timed, not through the receiver): N ATM orders are created at the sandbox bank through
the real client (OrderCreate, no BackendURL, so the bank pushes nothing), each is paid through the
sandbox's admin endpoint, and the orders and their PayTokens are COPYed into PostgreSQL as the
receiver would have stored them (orders pending, tokens received).

Each run: reset the rows to unresolved, set the bank latency (sandbox fault injection, applied to every
request: a resolution is a Nonce plus an OrderPayQuery, so 2 x latency of bank time), start K Celery
workers with the pool under test, enqueue the N resolve tasks as the receiver does, and wait until
every token is resolved. Printed: resolutions/s (N over first enqueue -> last resolved_at),
callback-to-paid latency p50/p99 (enqueue -> resolved_at, so queueing behind a burst of N is included),
the bank call time p50 as the workers saw it, and next to it the ceiling: raw OrderPayQuery calls/s
against the same sandbox from a threaded client with as many threads as the workers have slots.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg2
import redis
import requests

from bench import cli, harness
from bench.stats import fmt_ms, fmt_pct, percentile, ratio
from core.queues import CALLBACK_QUEUE, RESOLVE_TASK
from tests.support.procs import start_sandbox, start_worker

API_PATH = "/QPay.WebAPI/api/"


@dataclass
class Paid:
    order_no: str
    amount: int
    ts_no: str
    atm_pay_no: str
    pay_token: str


@dataclass
class DrainRun:
    pool: str
    workers: int
    concurrency: int
    latency_ms: int
    n: int
    seconds: float
    p50_ms: float
    p99_ms: float
    bank_p50_ms: float
    paid: int
    other: dict[str, int]
    ceiling_rps: float
    unresolved: int = 0  # tokens still unresolved when the run gave up (stalled or timed out)
    load: str = ""  # 1-minute load average at the start and the end of the run
    pool_full: int = 0  # urllib3 "Connection pool is full" warnings in the worker logs
    log_errors: int = 0  # ERROR and CRITICAL lines in the worker logs (e.g. a lost broker connection)

    @property
    def rps(self) -> float:
        """Resolutions per second: those that happened, over the time they took."""
        return (self.n - self.unresolved) / self.seconds if self.seconds else math.nan


@dataclass
class DrainReport:
    n: int
    runs: list[DrainRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [
            f"### drain ({self.n:,} stored callbacks, resolved by Celery workers against the sandbox bank)",
            "",
            "| pool | workers × slots | bank latency per request | resolutions/s | callback→paid p50 ms "
            "| p99 ms | bank call p50 ms | sandbox ceiling calls/s | % of ceiling | paid | pool full "
            "| worker log errors | load 1 min |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in self.runs:
            lines.append(
                f"| {r.pool} | {r.workers} × {r.concurrency} | {r.latency_ms} ms | {r.rps:.0f} | "
                f"{fmt_ms(r.p50_ms)} | {fmt_ms(r.p99_ms)} | {fmt_ms(r.bank_p50_ms)} | {r.ceiling_rps:.0f} | "
                f"{fmt_pct(ratio(r.rps, r.ceiling_rps))} | {r.paid:,}{_other(r.other)}{_stalled(r)} "
                f"| {r.pool_full} | {r.log_errors} | {r.load} |")
        lines += ["", *[f"- {n}" for n in self.notes]]
        return "\n".join(lines)


def _stalled(r: DrainRun) -> str:
    return f"; **{r.unresolved:,} unresolved when the run gave up**" if r.unresolved else ""


def _other(other: dict[str, int]) -> str:
    return "" if not other else " (" + ", ".join(f"{k}: {v}" for k, v in sorted(other.items())) + ")"


# -- setup --------------------------------------------------------------------------------------------


def _client(sandbox_url: str) -> Any:
    from core.settings import load_settings
    from core.sinopac.client import QPayClient

    settings = load_settings({"QPAY_API_BASE_URL": sandbox_url + API_PATH, "QPAY_READ_TIMEOUT": "30"})
    return QPayClient(settings)


def create_paid_orders(sandbox_url: str, n: int, threads: int = 8) -> list[Paid]:
    """N ATM orders at the sandbox (real OrderCreate), each paid by the customer, no callback pushed."""
    from core.sinopac.messages import OrderCreateRequest

    run = f"{int(time.time()) % 100000:05d}"
    local = threading.local()
    expire = date.today() + timedelta(days=3)
    session = requests.Session()

    def one(i: int) -> Paid:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = _client(sandbox_url)
        order_no = f"D{run}{i:07d}"
        created = client.create_order(OrderCreateRequest(
            order_no=order_no, amount=50000 + i % 100 * 100, pay_type="A", product_name="bench",
            return_url="http://127.0.0.1:9/qpay/return", backend_url="", expire_date=expire))
        resp = session.post(f"{sandbox_url}/sandbox/orders/{order_no}/pay",
                            json={"outcome": "paid"}, timeout=30)
        resp.raise_for_status()
        token = resp.json()["PayToken"]
        return Paid(order_no, created.amount, created.ts_no, created.atm_pay_no or "", str(token))

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(n)))


def store(url: str, paid: list[Paid]) -> None:
    """The rows the receiver and OrderCreate would have left: pending orders, received tokens."""
    now = datetime.now(UTC)
    expires = (now + timedelta(days=3)).isoformat()
    later = (now + timedelta(days=1)).isoformat()  # no sweep runs here, but keep the orders not due
    created = now.isoformat()
    orders = io.StringIO()
    tokens = io.StringIO()
    for p in paid:
        orders.write("\t".join((harness.SANDBOX_SHOP_NO, p.order_no, str(p.amount), "TWD", "A", "bench",
                                "pending", p.ts_no, p.atm_pay_no or r"\N", expires, later, "0", created,
                                created)) + "\n")
        tokens.write("\t".join((harness.SANDBOX_SHOP_NO, p.pay_token, "backend", "1", created, created,
                                "received", "0")) + "\n")
    orders.seek(0)
    tokens.seek(0)
    with psycopg2.connect(harness.dsn(url)) as conn, conn.cursor() as cur:
        cur.copy_expert("COPY orders (shop_no, order_no, amount, currency, pay_type, product_name, status, "
                        "ts_no, atm_pay_no, expires_at, next_check_at, check_attempts, created_at, "
                        "updated_at) FROM STDIN", orders)
        cur.copy_expert("COPY pay_tokens (shop_no, pay_token, source, receipts, first_received_at, "
                        "last_received_at, state, attempts) FROM STDIN", tokens)


def reset(url: str) -> list[int]:
    """Back to 'stored, unresolved' for the next run; returns the token ids."""
    conn = psycopg2.connect(harness.dsn(url))
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE orders SET status = 'pending', status_reason = NULL, paid_at = NULL, "
                    "pay_token = NULL, check_attempts = 0, next_check_at = now() + interval '1 day'")
        cur.execute("UPDATE pay_tokens SET state = 'received', attempts = 0, last_error = NULL, "
                    "resolved_at = NULL, last_enqueued_at = NULL, order_no = NULL")
        cur.execute("DELETE FROM order_events")
        cur.execute("DELETE FROM bank_calls")
        cur.execute("SELECT id FROM pay_tokens ORDER BY id")
        ids = [int(r[0]) for r in cur.fetchall()]
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
    conn.close()
    return ids


def set_latency(sandbox_url: str, latency_ms: int) -> None:
    resp = requests.post(f"{sandbox_url}/sandbox/faults", json={"clear": True, "latency_ms": latency_ms},
                         timeout=10)
    resp.raise_for_status()


# -- measurement --------------------------------------------------------------------------------------


def ceiling(sandbox_url: str, tokens: list[str], threads: int, seconds: float) -> float:
    """Raw OrderPayQuery calls/s against the sandbox: `threads` threads, one client each, no database."""
    deadline = time.monotonic() + seconds
    done = [0] * threads

    def loop(index: int) -> None:
        client = _client(sandbox_url)
        i = index
        while time.monotonic() < deadline:
            client.pay_query(tokens[i % len(tokens)])
            done[index] += 1
            i += threads
        client.close()

    t0 = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(loop, range(threads)))
    return sum(done) / (time.monotonic() - t0)


def _enqueue_all(redis_url: str, ids: list[int], sent_at: dict[int, float]) -> None:
    """Send the resolve tasks as the receiver does (by name, JSON, the callbacks queue)."""
    from celery import Celery

    app = Celery("bench-drain", broker=redis_url)
    app.conf.update(task_serializer="json", accept_content=["json"], broker_connection_retry_on_startup=True)
    with app.producer_or_acquire() as producer:
        for token_id in ids:
            sent_at[token_id] = time.time()
            app.send_task(RESOLVE_TASK, args=[token_id], queue=CALLBACK_QUEUE, producer=producer)


def _progress(url: str) -> tuple[int, dict[str, int]]:
    with psycopg2.connect(harness.dsn(url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT state, count(*) FROM pay_tokens GROUP BY state")
        states = {str(s): int(c) for s, c in cur.fetchall()}
    return states.get("received", 0), states


def _drained(url: str, sender: threading.Thread, *, timeout: float, stall: float) -> int:
    """Wait until every token is resolved; give up when nothing moved for `stall` seconds after the
    last enqueue, or after `timeout`. Returns how many were left unresolved (0: all done)."""
    deadline = time.monotonic() + timeout
    last, moved = -1, time.monotonic()
    while True:
        left = _progress(url)[0]
        now = time.monotonic()
        if left != last or sender.is_alive():
            last, moved = left, now
        if left == 0 and not sender.is_alive():
            return 0
        if now - moved > stall or now > deadline:
            return left
        time.sleep(0.25)  # pacing between polls of the database


def one_run(*, url: str, redis_url: str, sandbox_url: str, env: dict[str, str], pool: str, workers: int,
            concurrency: int, latency_ms: int, tokens: list[str], ceiling_seconds: float,
            timeout: float, stall: float) -> DrainRun:
    load_start = _load1()
    ids = reset(url)
    redis.Redis.from_url(redis_url).flushdb()
    set_latency(sandbox_url, latency_ms)
    slots = workers * concurrency
    cap = ceiling(sandbox_url, tokens, slots, ceiling_seconds)
    procs = [start_worker(env, name=f"bench{i}", queues=CALLBACK_QUEUE, concurrency=concurrency, pool=pool)
             for i in range(workers)]
    sent_at: dict[int, float] = {}
    try:
        t0 = time.time()
        sender = threading.Thread(target=_enqueue_all, args=(redis_url, ids, sent_at), daemon=True)
        sender.start()
        unresolved = _drained(url, sender, timeout=timeout, stall=stall)
    finally:
        for proc in procs:
            proc.stop()
    logs = [proc.log() for proc in procs]
    pool_full = sum(text.count("Connection pool is full") for text in logs)
    log_errors = sum(text.count('"level": "ERROR"') + text.count('"level": "CRITICAL"') for text in logs)
    with psycopg2.connect(harness.dsn(url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, extract(epoch FROM resolved_at) FROM pay_tokens")
        resolved = {int(i): float(t) for i, t in cur.fetchall() if t is not None}
        cur.execute("SELECT status, count(*) FROM orders GROUP BY status")
        statuses = {str(s): int(c) for s, c in cur.fetchall()}
        cur.execute("SELECT duration_ms FROM bank_calls WHERE api_service = 'OrderPayQuery'")
        bank_ms = [float(r[0]) for r in cur.fetchall()]
    latencies = [(resolved[i] - sent_at[i]) * 1000 for i in ids if i in resolved and i in sent_at]
    end = max(resolved.values()) if resolved else time.time()
    paid = statuses.pop("paid", 0)
    return DrainRun(pool=pool, workers=workers, concurrency=concurrency, latency_ms=latency_ms, n=len(ids),
                    seconds=end - t0, p50_ms=percentile(latencies, 50), p99_ms=percentile(latencies, 99),
                    bank_p50_ms=percentile(bank_ms, 50), paid=paid, other=statuses, ceiling_rps=cap,
                    load=f"{load_start} → {_load1()}", pool_full=pool_full, unresolved=unresolved,
                    log_errors=log_errors)


def _load1() -> str:
    return f"{os.getloadavg()[0]:.1f}"


@contextlib.contextmanager
def _stack(n: int) -> Iterator[tuple[str, str, str, dict[str, str], list[str]]]:
    with harness.private_redis() as redis_url, harness.database() as url:
        env = harness.app_env(url, redis_url)
        sandbox, sandbox_url = start_sandbox(env)
        try:
            env["QPAY_API_BASE_URL"] = sandbox_url + API_PATH
            t0 = time.monotonic()
            paid = create_paid_orders(sandbox_url, n)
            store(url, paid)
            print(f"  setup: {n} orders created and paid at the sandbox, stored in "
                  f"{time.monotonic() - t0:.1f} s", flush=True)
            yield url, redis_url, sandbox_url, env, [p.pay_token for p in paid]
        finally:
            sandbox.stop()


def run(*, n: int, workers: int, pools: list[tuple[str, int]], latencies: list[int], ceiling_seconds: float,
        timeout: float, stall: float = 60.0) -> DrainReport:
    report = DrainReport(n=n)
    if importlib.util.find_spec("gevent") is None:
        report.notes.append("gevent is not installed (it is not in requirements.txt), so the gevent pool "
                            "was not measured")
        pools = [(p, c) for p, c in pools if p != "gevent"]
    with _stack(n) as (url, redis_url, sandbox_url, env, tokens):
        for latency in latencies:
            for pool, concurrency in pools:
                r = one_run(url=url, redis_url=redis_url, sandbox_url=sandbox_url, env=env, pool=pool,
                            workers=workers, concurrency=concurrency, latency_ms=latency, tokens=tokens,
                            ceiling_seconds=ceiling_seconds, timeout=timeout, stall=stall)
                report.runs.append(r)
                print(f"  {pool:8s} {workers}x{concurrency:<3d} latency {latency:>4} ms: {r.rps:7.1f}/s  "
                      f"p50 {fmt_ms(r.p50_ms)} ms  p99 {fmt_ms(r.p99_ms)} ms  "
                      f"bank p50 {fmt_ms(r.bank_p50_ms)} ms  ceiling {r.ceiling_rps:.0f}/s  "
                      f"paid {r.paid}{_other(r.other)}{_stalled(r)}  pool full {r.pool_full}  "
                      f"log errors {r.log_errors}  load {r.load}", flush=True)
    return report


def summary_line(report: DrainReport) -> str:
    parts = [f"{r.pool} {r.workers}x{r.concurrency} @{r.latency_ms}ms {r.rps:.0f}/s" for r in report.runs]
    return f"drain {report.n:,}: " + ", ".join(parts)


def _pools(text: str) -> list[tuple[str, int]]:
    out = []
    for part in text.split(","):
        name, _, conc = part.strip().partition(":")
        out.append((name, int(conc or 4)))
    return out


def add_arguments(parser: argparse.ArgumentParser, *, full: bool = False) -> None:
    parser.add_argument("-n", "--callbacks", type=int, default=10_000 if full else 2_000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (K)")
    parser.add_argument("--pools", default="prefork:4,threads:16,gevent:64",
                        help="pool:slots per worker, comma-separated")
    parser.add_argument("--latencies", default="0,100",
                        help="bank latency per request in ms, comma-separated")
    parser.add_argument("--ceiling-seconds", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="give up on a run after this many seconds")
    parser.add_argument("--stall", type=float, default=60.0,
                        help="give up on a run when no token was resolved for this many seconds")


def from_args(args: argparse.Namespace) -> DrainReport:
    return run(n=args.callbacks, workers=args.workers, pools=_pools(args.pools),
               latencies=[int(x) for x in args.latencies.split(",")], ceiling_seconds=args.ceiling_seconds,
               timeout=args.timeout, stall=args.stall)


if __name__ == "__main__":
    cli.run_part(sys.modules[__name__], full_help="10,000 callbacks")
