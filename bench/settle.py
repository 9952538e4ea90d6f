"""bench/settle: settlement latency at a steady rate, with the Procfile's `web` and `worker` lines.

Setup (not timed): N ATM orders created at the sandbox bank and paid there (bench/drain.py's set-up),
stored in PostgreSQL as pending orders; no PayToken is stored: the callbacks bring them.

Each run (rate R callbacks/s, bank latency L ms per request): the sandbox answers every request L ms
late (its latency fault), the real web (gunicorn.conf.py) and one `worker` line of the Procfile (its
command and defaults, run through sh) start on a fresh Redis, and an open-loop sender POSTs the bank's
callback for paid order i at t0 + i/R, one connection per callback like the bank, for `--seconds`,
whatever the answers' speed. Measured: callback received -> order paid (pay_tokens.first_received_at
to the paid event's time), p50 / p99 / max; the drain rate (orders paid per second from the first
receipt to the last payment); the worker's CPU per settlement (its process group's user + system
time over the run, divided by the orders paid); the web's CPU per callback. With `--profile` the
worker is sampled by py-spy during the run and the samples are grouped (Celery, HTTP, crypto, JSON,
database, bank_calls rows, logging, metrics).

The bank budget (QPAY_BANK_RATE) is 0 (none) unless `--bank-rate` sets one: with production's
default of 10 requests/s and 4 requests per settlement, nothing could settle faster than 2.5/s.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import redis
import requests

from bench import cli, drain, harness
from bench.stats import fmt_ms, percentile
from tests.support.procs import BIN, Proc, start_sandbox, start_web
from tests.support.services import PROJECT_DIR


@dataclass
class SettleRun:
    rate: float
    latency_ms: int
    seconds: float
    sent: int
    accepted: int
    paid: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    drain_rps: float
    worker_cpu_ms: float  # per order paid
    web_cpu_ms: float  # per callback accepted
    bank_rate: float
    load: str
    other: dict[str, int] = field(default_factory=dict)
    profile: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class SettleReport:
    n: int
    worker_line: str
    runs: list[SettleRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [
            "### settle (open-loop callbacks at a fixed rate -> web -> worker -> sandbox bank)",
            "",
            f"worker: `{self.worker_line}`",
            "",
            "| rate /s | bank latency | bank budget | sent | paid | received→paid p50 ms | p99 ms | max ms "
            "| drain /s | worker CPU ms / settlement | web CPU ms / callback | load 1 min |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in self.runs:
            budget = "none" if r.bank_rate <= 0 else f"{r.bank_rate:g}/s"
            other = ", ".join(f"{k} {v}" for k, v in sorted(r.other.items()))
            other = f" ({other})" if other else ""
            lines.append(
                f"| {r.rate:g} | {r.latency_ms} ms | {budget} | {r.sent:,} | {r.paid:,}{other} | "
                f"{fmt_ms(r.p50_ms)} | {fmt_ms(r.p99_ms)} | {fmt_ms(r.max_ms)} | {r.drain_rps:.1f} | "
                f"{r.worker_cpu_ms:.1f} | {r.web_cpu_ms:.2f} | {r.load} |")
        for r in self.runs:
            if r.profile:
                lines += ["", f"py-spy profile of the worker at {r.rate:g}/s, {r.latency_ms} ms (share of "
                              "the GIL holder's samples; × the measured CPU per settlement):",
                          ""]
                lines += [f"- {name}: {share:.1%} ≈ {share * r.worker_cpu_ms:.1f} ms"
                          for name, share in r.profile]
        lines += ["", *[f"- {n}" for n in self.notes]]
        return "\n".join(lines)


def procfile_line(name: str) -> str:
    for line in (PROJECT_DIR / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise LookupError(f"no {name} line in the Procfile")


def start_procfile_worker(env: dict[str, str]) -> Proc:
    """The Procfile's worker line as a platform runs it (sh expands its ${VAR:-default}s)."""
    line = procfile_line("worker")
    proc = Proc("settle-worker", ["/bin/sh", "-c", f"exec {line}"],
                {**env, "PATH": f"{BIN}:{env.get('PATH', '')}"}).start()
    proc.wait_ready(lambda: proc.log().count("ready.") >= _expected_ready(env), timeout=90)
    return proc


def _expected_ready(env: dict[str, str]) -> int:
    line = procfile_line("worker")
    if "workers.launch" not in line:
        return 1
    return int(env.get("WORKER_PROCESSES") or os.cpu_count() or 1)


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants (workers.launch starts each
    worker in a session of its own, so the process group does not hold them)."""
    import psutil

    total = 0.0
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def store_orders(url: str, paid: list[drain.Paid]) -> None:
    drain.store(url, paid)
    with psycopg2.connect(harness.dsn(url)) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM pay_tokens")


def reset(url: str) -> None:
    conn = psycopg2.connect(harness.dsn(url))
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE orders SET status = 'pending', status_reason = NULL, paid_at = NULL, "
                    "pay_token = NULL, check_attempts = 0, next_check_at = now() + interval '1 day'")
        cur.execute("DELETE FROM pay_tokens")
        cur.execute("DELETE FROM order_events")
        cur.execute("DELETE FROM bank_calls")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
    conn.close()


def send_open_loop(base: str, tokens: list[str], rate: float, accepted: list[int]) -> None:
    """POST callback i at t0 + i/rate from a pool of senders, never waiting for an answer to send."""
    shop = harness.SANDBOX_SHOP_NO
    local = threading.local()

    def post(token: str) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        try:
            r = session.post(f"{base}/qpay/backend", json={"ShopNo": shop, "PayToken": token},
                             headers={"Connection": "close"}, timeout=30)
            if r.status_code == 200:
                accepted[0] += 1
        except requests.RequestException:
            pass

    t0 = time.monotonic()
    with ThreadPoolExecutor(64) as pool:
        for i, token in enumerate(tokens):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # the open-loop schedule, not synchronisation
            pool.submit(post, token)


def _unresolved(url: str) -> int:
    with psycopg2.connect(harness.dsn(url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pay_tokens WHERE state = 'received'")
        return int(cur.fetchone()[0])  # type: ignore[index]


_CATEGORIES: list[tuple[str, re.Pattern[str]]] = [
    ("logging (core/logging.py, stdlib logging)",
     re.compile(r"[(/]core/logging\.py|[(/]logging/__init__\.py")),
    ("bank_calls rows (workers/bank.py _record_alone)", re.compile(r"_record_alone")),
    ("metrics (prometheus-client)", re.compile(r"[(/]metrics/|prometheus_client/")),
    ("crypto (AES, SHA-256, Sign)", re.compile(r"[(/]Crypto/|core/sinopac/crypto\.py|hashlib")),
    ("HTTP to the bank (requests, urllib3, http.client, sockets)",
     re.compile(r"[(/](requests|urllib3)/|[(/]http/client\.py|[(/]socket\.py|[(/]ssl\.py")),
    ("JSON and envelope parsing", re.compile(r"[(/]json/|core/sinopac/(envelope|results)\.py")),
    ("database (SQLAlchemy ORM/Core, psycopg2, core/driver.py)",
     re.compile(r"[(/]sqlalchemy/|psycopg2|[(/]core/(driver|db)\.py")),
    # Our own Python (a task's body, the signal handlers): before Celery, whose frames are at the root
    # of every task's stack, so that "Celery" counts only its and kombu's own machinery.
    ("our code (core/, workers/: settlement rules, task body, signal handlers)",
     re.compile(r"\((core|workers)/|/(core|workers)/[a-z_/]+\.py")),
    ("Celery, kombu, broker (task overhead)", re.compile(r"[(/](celery|kombu|billiard|redis|vine)/")),
]


def group_profile(raw: Path) -> list[tuple[str, float]]:
    """py-spy's raw (collapsed) stacks grouped by the first category any frame of a stack matches."""
    counts: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        samples = int(n)
        total += samples
        name = next((label for label, pattern in _CATEGORIES if pattern.search(stack)), "other (threads, "
                    "interpreter)")
        counts[name] += samples
    return [(name, c / total) for name, c in counts.most_common()] if total else []


@contextlib.contextmanager
def py_spy(pid: int, enabled: bool) -> Iterator[Path | None]:
    if not enabled:
        yield None
        return
    out = Path(tempfile.mkdtemp(prefix="qpay-pyspy-")) / "worker.txt"
    spy = subprocess.Popen([str(BIN / "py-spy"), "record", "--pid", str(pid), "--subprocesses", "--rate",
                            "250", "--gil", "--format", "raw", "--output", str(out), "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield out
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.kill()


def one_run(*, url: str, redis_url: str, sandbox_url: str, env: dict[str, str], tokens: list[str],
            rate: float, latency_ms: int, seconds: float, bank_rate: float, profile: bool,
            stall: float) -> SettleRun:
    load_start = os.getloadavg()[0]
    reset(url)
    redis.Redis.from_url(redis_url).flushdb()
    drain.set_latency(sandbox_url, latency_ms)
    run_env = {**env, "QPAY_BANK_RATE": f"{bank_rate:g}"}
    n = min(len(tokens), int(rate * seconds))
    web, base = start_web(run_env)
    worker = start_procfile_worker(run_env)
    accepted = [0]
    try:
        web_cpu0 = harness.group_cpu_seconds(web.pid)
        cpu0 = tree_cpu_seconds(worker.pid)
        with py_spy(worker.pid, profile) as raw:
            sender = threading.Thread(target=send_open_loop, args=(base, tokens[:n], rate, accepted),
                                      daemon=True)
            sender.start()
            last, moved = -1, time.monotonic()
            while True:
                left = _unresolved(url)
                now = time.monotonic()
                if left != last or sender.is_alive():
                    last, moved = left, now
                if left == 0 and not sender.is_alive():
                    break
                if now - moved > stall:
                    break
                time.sleep(0.5)  # pacing between polls of the database
            cpu = tree_cpu_seconds(worker.pid) - cpu0
            web_cpu = harness.group_cpu_seconds(web.pid) - web_cpu0
    finally:
        worker.stop()
        web.stop()
    with psycopg2.connect(harness.dsn(url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT extract(epoch FROM t.first_received_at), extract(epoch FROM e.at) "
                    "FROM pay_tokens t JOIN order_events e "
                    "ON e.order_no = t.order_no AND e.to_status = 'paid'")
        pairs = [(float(a), float(b)) for a, b in cur.fetchall()]
        cur.execute("SELECT status, count(*) FROM orders WHERE status <> 'pending' GROUP BY status")
        statuses = {str(s): int(c) for s, c in cur.fetchall()}
    lat = [(b - a) * 1000 for a, b in pairs]
    paid = statuses.pop("paid", 0)
    span = (max(b for _, b in pairs) - min(a for a, _ in pairs)) if pairs else math.nan
    return SettleRun(
        rate=rate, latency_ms=latency_ms, seconds=seconds, sent=n, accepted=accepted[0], paid=paid,
        p50_ms=percentile(lat, 50), p99_ms=percentile(lat, 99), max_ms=max(lat) if lat else math.nan,
        drain_rps=paid / span if span else math.nan,
        worker_cpu_ms=cpu * 1000 / paid if paid else math.nan,
        web_cpu_ms=web_cpu * 1000 / accepted[0] if accepted[0] else math.nan,
        bank_rate=bank_rate, load=f"{load_start:.1f} → {os.getloadavg()[0]:.1f}", other=statuses,
        profile=group_profile(raw) if raw is not None and raw.exists() else [])


def run(*, rates: list[float], latencies: list[int], seconds: float, bank_rate: float, profile: bool,
        stall: float) -> SettleReport:
    n = int(max(rates) * seconds)
    report = SettleReport(n=n, worker_line=procfile_line("worker"))
    with harness.private_redis() as redis_url, harness.database() as url:
        env = harness.app_env(url, redis_url)
        sandbox, sandbox_url = start_sandbox(env)
        try:
            env["QPAY_API_BASE_URL"] = sandbox_url + drain.API_PATH
            t0 = time.monotonic()
            paid = drain.create_paid_orders(sandbox_url, n)
            store_orders(url, paid)
            print(f"  setup: {n} orders created and paid at the sandbox in {time.monotonic() - t0:.1f} s",
                  flush=True)
            tokens = [p.pay_token for p in paid]
            for latency in latencies:
                for rate in rates:
                    r = one_run(url=url, redis_url=redis_url, sandbox_url=sandbox_url, env=env, tokens=tokens,
                                rate=rate, latency_ms=latency, seconds=seconds, bank_rate=bank_rate,
                                profile=profile, stall=stall)
                    report.runs.append(r)
                    print(f"  {rate:g}/s bank {latency} ms: paid {r.paid}/{r.sent} p50 {fmt_ms(r.p50_ms)} "
                          f"p99 {fmt_ms(r.p99_ms)} max {fmt_ms(r.max_ms)} ms, drain {r.drain_rps:.1f}/s, "
                          f"worker CPU {r.worker_cpu_ms:.1f} ms/settlement, web {r.web_cpu_ms:.2f} ms, "
                          f"load {r.load}", flush=True)
        finally:
            sandbox.stop()
    return report


def summary_line(report: SettleReport) -> str:
    parts = [f"{r.rate:g}/s @{r.latency_ms}ms p99 {fmt_ms(r.p99_ms)} ms ({r.worker_cpu_ms:.1f} ms CPU)"
             for r in report.runs]
    return "settle: " + ", ".join(parts)


def add_arguments(parser: argparse.ArgumentParser, *, full: bool = False) -> None:
    parser.add_argument("--rates", default="50,100", help="callbacks per second, comma-separated")
    parser.add_argument("--settle-latencies", default="100,0",
                        help="bank latency per request in ms, comma-separated (0 is the control)")
    parser.add_argument("--settle-seconds", type=float, default=60.0 if full else 20.0,
                        help="how long callbacks are sent at each rate")
    parser.add_argument("--bank-rate", type=float, default=0.0,
                        help="QPAY_BANK_RATE for the run (0: no budget)")
    parser.add_argument("--profile", action="store_true", help="sample the worker with py-spy")
    parser.add_argument("--settle-stall", type=float, default=60.0,
                        help="give up on a run when no token was resolved for this many seconds")


def from_args(args: argparse.Namespace) -> SettleReport:
    return run(rates=[float(x) for x in args.rates.split(",")],
               latencies=[int(x) for x in args.settle_latencies.split(",")], seconds=args.settle_seconds,
               bank_rate=args.bank_rate, profile=args.profile, stall=args.settle_stall)


if __name__ == "__main__":
    cli.run_part(sys.modules[__name__], full_help="60 s per rate")
