"""bench/notify: shop notifications, delivered by a real Celery worker to a real signed-webhook endpoint.

Three measurements, one worker process (threads pool, the Procfile's), one shop endpoint
(scripts/shop.py, which verifies every delivery with `standardwebhooks`), PostgreSQL and a private Redis:

  steady     order changes committed at a steady rate (orders created through core.services.orders with
             an in-process fake bank, each commit publishing its event exactly as the web does): the
             time from the change (the event's timestamp) to the shop receiving it, p50/p99;
  burst      N events written at once, then enqueued together: events delivered per second;
  control    the same N bodies signed and POSTed by a bare loop (core.webhook_signing +
             workers.notify.post_event) from as many threads as the worker's delivery slots, no
             database and no broker: the ceiling of the endpoint, the signing and the HTTP client.

The ratio burst / control is the cost of the outbox (claim, record, settle: two transactions per
attempt) and of the broker around each POST.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from bench import cli, harness
from bench.stats import fmt_ms, fmt_pct, percentile, ratio
from core.db import dispose_engines, transaction
from core.models import ShopEvent
from core.services import events
from core.services.orders import NewOrder, create_order
from core.settings import load_settings
from core.webhook_signing import new_secret, secret_key, signed_headers
from scripts.shop import ShopEndpoint
from tests.support.fakes import FakeBankClient
from tests.support.poll import wait_for
from tests.support.procs import start_worker
from webhook.enqueue import CeleryEnqueuer
from workers.notify import post_event


@dataclass
class NotifyReport:
    rate: float
    seconds: float
    burst: int
    concurrency: int
    steady_sent: int = 0
    steady_p50_ms: float = float("nan")
    steady_p99_ms: float = float("nan")
    steady_max_ms: float = float("nan")
    burst_rps: float = float("nan")
    control_rps: float = float("nan")
    control_p50_ms: float = float("nan")
    control_p99_ms: float = float("nan")
    unverified: int = 0
    load: str = ""

    def markdown(self) -> str:
        return "\n".join([
            f"### notify — worker threads x{self.concurrency} "
            f"(delivery slots {max(1, self.concurrency // 2)}), load average {self.load}",
            "",
            "| measurement | events | per second | p50 ms | p99 ms |",
            "|---|---:|---:|---:|---:|",
            f"| steady: order change -> shop received at {self.rate:g}/s for {self.seconds:g} s | "
            f"{self.steady_sent} | {self.rate:g} | {fmt_ms(self.steady_p50_ms)} | "
            f"{fmt_ms(self.steady_p99_ms)} |",
            f"| burst: delivered by the worker | {self.burst} | {self.burst_rps:.0f} | | |",
            f"| control: bare signed POST loop ({max(1, self.concurrency // 2)} threads) | {self.burst} | "
            f"{self.control_rps:.0f} | {fmt_ms(self.control_p50_ms)} | {fmt_ms(self.control_p99_ms)} |",
            "",
            f"burst / control: {fmt_pct(ratio(self.burst_rps, self.control_rps))}; steady max "
            f"{fmt_ms(self.steady_max_ms)} ms; deliveries failing verification: {self.unverified}",
        ])


@contextmanager
def _rig(concurrency: int) -> Iterator[tuple[str, str, ShopEndpoint]]:
    with harness.database() as url, harness.private_redis() as redis_url, \
            ShopEndpoint(new_secret()) as shop:
        env = harness.app_env(url, redis_url, SHOP_WEBHOOK_URL=shop.url, SHOP_WEBHOOK_SECRET=shop.secret,
                              SHOP_WEBHOOK_RETRY_BASE="1", SHOP_WEBHOOK_RETRY_CAP="5", LOG_LEVEL="INFO")
        worker = start_worker(env, name="notify-bench", queues="notifications", concurrency=concurrency)
        with harness.running(worker):
            yield url, redis_url, shop
        dispose_engines()


def _create(url: str, bank: FakeBankClient, n: int) -> None:
    settings = load_settings({"DATABASE_URL": url})
    with transaction(url) as session:
        for _ in range(n):
            create_order(session, bank, settings, NewOrder(100, "A", "bench"))


def _steady(url: str, redis_url: str, shop: ShopEndpoint, bank: FakeBankClient, rate: float,
            seconds: float, report: NotifyReport) -> None:
    enqueuer = CeleryEnqueuer(redis_url)
    events.set_publisher(enqueuer.send_event)
    try:
        started = time.monotonic()
        sent = 0
        while time.monotonic() - started < seconds:
            due = started + sent / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # pacing the steady rate, not synchronisation
            _create(url, bank, 1)
            sent += 1
    finally:
        events.set_publisher(None)
    wait_for(lambda: len(shop.accepted()) >= sent, timeout=60, interval=0.1, message="steady deliveries")
    first: dict[str, float] = {}
    for d in shop.accepted():
        first.setdefault(d.webhook_id, d.received_at)
    latencies = [(first[d.webhook_id] - datetime.fromisoformat(d.event["timestamp"]).timestamp()) * 1000
                 for d in shop.accepted() if first[d.webhook_id] == d.received_at]
    report.steady_sent = sent
    report.steady_p50_ms = percentile(latencies, 50)
    report.steady_p99_ms = percentile(latencies, 99)
    report.steady_max_ms = max(latencies) if latencies else float("nan")


def _burst(url: str, redis_url: str, bank: FakeBankClient, n: int, report: NotifyReport) -> list[bytes]:
    _create(url, bank, n)  # no publisher: written, not sent
    with transaction(url) as session:
        rows = list(session.execute(select(ShopEvent.id, ShopEvent.body).where(ShopEvent.state == "pending")))
    enqueuer = CeleryEnqueuer(redis_url)
    started = time.monotonic()
    for row in rows:
        enqueuer.send_event(row.id)

    def delivered() -> bool:
        with transaction(url) as session:
            left = session.scalar(select(func.count()).select_from(ShopEvent)
                                  .where(ShopEvent.state != "delivered"))
        return left == 0

    wait_for(delivered, timeout=300, interval=0.05, message="the burst delivered")
    report.burst_rps = len(rows) / (time.monotonic() - started)
    return [row.body.encode() for row in rows]


def _control(shop: ShopEndpoint, bodies: list[bytes], threads: int, report: NotifyReport) -> None:
    key = secret_key(shop.secret)
    durations: list[float] = []
    lock = threading.Lock()

    def one(i_body: tuple[int, bytes]) -> None:
        i, body = i_body
        t0 = time.monotonic()
        result = post_event(shop.url, body, signed_headers(key, f"evt_c{i}", int(time.time()), body))
        with lock:
            durations.append((time.monotonic() - t0) * 1000)
        assert result.delivered, result

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, enumerate(bodies)))
    report.control_rps = len(bodies) / (time.monotonic() - started)
    report.control_p50_ms = percentile(durations, 50)
    report.control_p99_ms = percentile(durations, 99)


def run(*, rate: float, seconds: float, burst: int, concurrency: int) -> NotifyReport:
    from bench.machine import load_average

    report = NotifyReport(rate=rate, seconds=seconds, burst=burst, concurrency=concurrency,
                          load=load_average())
    bank = FakeBankClient()  # one, so that its TSNos stay unique
    with _rig(concurrency) as (url, redis_url, shop):
        _steady(url, redis_url, shop, bank, rate, seconds, report)
        print(f"  steady {rate:g}/s x {seconds:g}s: p50 {fmt_ms(report.steady_p50_ms)} ms  "
              f"p99 {fmt_ms(report.steady_p99_ms)} ms", flush=True)
        bodies = _burst(url, redis_url, bank, burst, report)
        print(f"  burst {burst}: {report.burst_rps:.0f} delivered/s", flush=True)
        _control(shop, bodies, max(1, concurrency // 2), report)
        print(f"  control: {report.control_rps:.0f} POST/s", flush=True)
        report.unverified = len(shop.unverified())
    return report


def summary_line(report: NotifyReport) -> str:
    share = fmt_pct(ratio(report.burst_rps, report.control_rps))
    return (f"notify: {report.burst_rps:.0f} events/s delivered ({share} of a bare signed POST loop); "
            f"change -> shop p50 {fmt_ms(report.steady_p50_ms)} ms, "
            f"p99 {fmt_ms(report.steady_p99_ms)} ms at {report.rate:g}/s")


def add_arguments(parser: argparse.ArgumentParser, *, full: bool = False) -> None:
    parser.add_argument("--notify-rate", type=float, default=20.0, help="order changes per second (steady)")
    parser.add_argument("--notify-seconds", type=float, default=60.0 if full else 15.0)
    parser.add_argument("--notify-burst", type=int, default=5000 if full else 1000)
    parser.add_argument("--notify-concurrency", type=int, default=16, help="the worker's task slots")


def from_args(args: argparse.Namespace) -> NotifyReport:
    return run(rate=args.notify_rate, seconds=args.notify_seconds, burst=args.notify_burst,
               concurrency=args.notify_concurrency)


if __name__ == "__main__":
    cli.run_part(sys.modules[__name__], full_help="60 s steady, 5,000 burst")
