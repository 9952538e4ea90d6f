"""bench/scrape: GET /metrics of the real web server over tables of 10k, 100k and 1M orders.

The issue's bar: a scrape of a web process with 1M orders in the database answers in under 100 ms,
because the business figures (metrics/figures.py over core/services/figures.py) read partial indexes
whose size follows the pending work, not the tables.

For each size a fresh PostgreSQL database is bulk-loaded with bench/sweep.py's loader (1% of the orders
pending, the rest paid or expired, resolved PayTokens for a tenth of them, 10 unresolved stragglers),
plus 100 orders in needs_review, 5 untrusted tokens and one sweep_runs row per 10 orders (a tenth with
errors), then VACUUM ANALYZEd. The real app runs under gunicorn with the repo's config (2 workers,
multiprocess metrics) and a private Redis broker with a few messages queued; the scrape is timed from
this process over HTTP (sequential requests on one keep-alive connection, after a warm-up), so the
figures include the HTTP round trip, the counters of both workers, the database reads and the broker's
queue lengths. The database's share (core.services.figures.read_figures, one statement) and the
broker's (metrics.figures.QueueDepths) are also timed alone in this process, and the plan of the
figures' statement at the largest size is printed with the report.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import redis
import requests
from sqlalchemy import event

from bench import cli, harness, sweep
from core.queues import CALLBACK_QUEUE, SWEEP_QUEUE

REVIEW = 100
UNTRUSTED = 5
TOKEN = "bench-metrics-token"
@dataclass
class Size:
    size: int
    load_seconds: float
    times_ms: list[float]
    body_bytes: int
    pending: int
    figures_ms: float = 0.0  # read_figures in this process, median: the database's share
    queues_ms: float = 0.0  # QueueDepths in this process, median: the broker's share

    def quantile(self, q: float) -> float:
        ordered = sorted(self.times_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class ScrapeReport:
    scrapes: int
    sizes: list[Size] = field(default_factory=list)
    plan: str = ""
    statement: str = ""

    def markdown(self) -> str:
        lines = [
            "### scrape (GET /metrics of the real web under gunicorn, 2 workers; real PostgreSQL and Redis)",
            "",
            f"{self.scrapes} sequential scrapes per size after 20 warm-up scrapes.",
            "",
            "| orders | pending | scrape median ms | p95 ms | max ms | figures (DB) median ms | "
            "queue depths median ms | body bytes | load s |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for s in self.sizes:
            lines.append(f"| {s.size:,} | {s.pending:,} | {statistics.median(s.times_ms):.1f} | "
                         f"{s.quantile(0.95):.1f} | {max(s.times_ms):.1f} | {s.figures_ms:.2f} | "
                         f"{s.queues_ms:.2f} | {s.body_bytes:,} | {s.load_seconds:.1f} |")
        if self.plan:
            biggest = max(s.size for s in self.sizes)
            lines += ["", f"the figures' one statement and its plan at {biggest:,} orders (EXPLAIN ANALYZE):",
                      "", "```sql", self.statement, "```", "", "```", self.plan, "```"]
        return "\n".join(lines)


def _extra_rows(url: str, size: int, now: datetime) -> None:
    """Orders in review, untrusted tokens and a sweep_runs history of one row per 10 orders."""
    with psycopg2.connect(harness.dsn(url)) as conn, conn.cursor() as cur:
        cur.execute("UPDATE orders SET status = 'needs_review', next_check_at = NULL WHERE id IN "
                    "(SELECT id FROM orders WHERE status = 'paid' ORDER BY id LIMIT %s)", (REVIEW,))
        for j in range(UNTRUSTED):
            at = now - timedelta(minutes=40 + j)
            cur.execute("INSERT INTO pay_tokens (shop_no, pay_token, source, receipts, first_received_at, "
                        "last_received_at, state, attempts) VALUES (%s, %s, 'backend', 1, %s, %s, "
                        "'untrusted', 1)", (sweep.SHOP, f"untrusted{j:055d}", at, at))
        cur.execute(
            "INSERT INTO sweep_runs (started_at, finished_at, requeued, found, settled, expired, "
            "still_pending, errors) SELECT %s - make_interval(mins => g), %s - make_interval(mins => g), "
            "0, 0, 0, 0, 0, CASE WHEN g %% 10 = 0 THEN 1 ELSE 0 END FROM generate_series(1, %s) g",
            (now, now, max(1, size // 10)))
    conn.close()
    conn = psycopg2.connect(harness.dsn(url))
    conn.autocommit = True
    with conn.cursor() as cur:
        for table in ("orders", "pay_tokens", "sweep_runs"):
            cur.execute(f"VACUUM ANALYZE {table}")
    conn.close()


def _median_ms(call: Callable[[], object], rounds: int = 100) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _components(url: str, redis_url: str) -> tuple[float, float, str, dict[str, Any]]:
    """The database's and the broker's shares, timed in this process, and the figures' statement."""
    from core.db import dispose_engines, session_factory, transaction
    from core.services.figures import read_figures
    from metrics.figures import QUEUES, QueueDepths

    engine = session_factory(url).kw["bind"]
    seen: list[tuple[str, dict[str, Any]]] = []

    def grab(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, dict(parameters or {})))

    def figures() -> None:
        with transaction(url) as session:
            read_figures(session)

    event.listen(engine, "before_cursor_execute", grab)
    try:
        figures()
    finally:
        event.remove(engine, "before_cursor_execute", grab)
    statement, params = next((st, p) for st, p in seen if "sweep_runs" in st)
    figures_ms = _median_ms(figures)
    queues_ms = _median_ms(QueueDepths(redis_url, QUEUES))
    dispose_engines()
    return figures_ms, queues_ms, statement, params


def _plan(url: str, statement: str, params: dict[str, Any]) -> str:
    with psycopg2.connect(harness.dsn(url)) as conn, conn.cursor() as cur:
        cur.execute(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) {statement}", params)
        plan = "\n".join(row[0] for row in cur.fetchall())
    conn.close()
    return plan


def measure_size(size: int, scrapes: int, report: ScrapeReport, *, explain: bool) -> None:
    now = datetime.now(UTC)
    with harness.database() as url, harness.private_redis() as redis_url:
        load_seconds = sweep.load(url, size, now)
        _extra_rows(url, size, now)
        broker = redis.Redis.from_url(redis_url)
        broker.lpush(CALLBACK_QUEUE, *[b"{}"] * 5)
        broker.lpush(SWEEP_QUEUE, b"{}")
        env = harness.app_env(url, redis_url, METRICS_TOKEN=TOKEN, LOG_LEVEL="WARNING")
        proc, base = harness.start_gunicorn("web-scrape", "webhook:create_app()", env, workers=2)
        with harness.running(proc), requests.Session() as http:
            http.headers["Authorization"] = f"Bearer {TOKEN}"
            body = b""
            for _ in range(20):
                resp = http.get(f"{base}/metrics", timeout=10)
                resp.raise_for_status()
                body = resp.content
            if b'qpay_orders{status="pending"}' not in body or b"qpay_queue_messages" not in body:
                raise RuntimeError("the scrape lacks the business figures:\n" + body.decode()[-2000:])
            times = []
            for _ in range(scrapes):
                t0 = time.perf_counter()
                resp = http.get(f"{base}/metrics", timeout=10)
                times.append((time.perf_counter() - t0) * 1000)
                resp.raise_for_status()
        figures_ms, queues_ms, statement, params = _components(url, redis_url)
        report.sizes.append(Size(size, load_seconds, times, len(body), size // 100, figures_ms, queues_ms))
        if explain:
            report.plan = _plan(url, statement, params)
            report.statement = statement
        broker.close()
        s = report.sizes[-1]
        print(f"  {size:>9,} orders  median {statistics.median(times):6.1f} ms  "
              f"p95 {s.quantile(0.95):6.1f} ms  max {max(times):6.1f} ms  figures {figures_ms:.2f} ms  "
              f"queues {queues_ms:.2f} ms", flush=True)


def run(sizes: list[int], scrapes: int) -> ScrapeReport:
    report = ScrapeReport(scrapes)
    for size in sizes:
        measure_size(size, scrapes, report, explain=size == max(sizes))
    return report


def summary_line(report: ScrapeReport) -> str:
    parts = ", ".join(f"{s.size // 1000}k: median {statistics.median(s.times_ms):.1f} ms "
                      f"(p95 {s.quantile(0.95):.1f})" for s in report.sizes)
    return f"GET /metrics: {parts}"


def add_arguments(parser: argparse.ArgumentParser, *, full: bool = False) -> None:
    default = "10000,100000,1000000" if full else "10000,100000"
    parser.add_argument("--scrape-sizes", default=default,
                        help=f"comma-separated order counts for the scrape (default {default})")
    parser.add_argument("--scrapes", type=int, default=200, help="timed scrapes per size (default 200)")


def from_args(args: argparse.Namespace) -> ScrapeReport:
    return run([int(s) for s in args.scrape_sizes.split(",") if s.strip()], args.scrapes)


if __name__ == "__main__":
    cli.run_part(sys.modules[__name__], full_help="include 1M orders")
