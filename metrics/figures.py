"""The business gauges, read at scrape time by the web's GET /metrics only (one process type, so each
figure is one series, not one per process).

A Prometheus custom collector: each scrape runs core.services.figures (a few partial-index reads) and
asks the broker how many messages wait per queue. A source that cannot be read is left out of that
scrape and counted in qpay_scrape_errors_total{source}, so a broken database shows up as missing
series plus an error count, never as a misleading zero and never as a failed scrape.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, suppress
from typing import Any

import redis
from kombu import Connection
from kombu.transport.redis import PRIORITY_STEPS as REDIS_PRIORITY_STEPS
from kombu.transport.redis import Channel as RedisChannel
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session

from core.queues import CALLBACK_QUEUE, NOTIFY_QUEUE, SWEEP_QUEUE
from core.services.figures import Figures, read_figures

log = logging.getLogger(__name__)

# Queues whose depth is reported.
QUEUES: tuple[str, ...] = (CALLBACK_QUEUE, SWEEP_QUEUE, NOTIFY_QUEUE)
BROKER_TIMEOUT = 1.0
REDIS_PRIORITY_SEP = RedisChannel.sep

SCRAPE_ERRORS = Counter(
    "qpay_scrape_errors_total", "Scrape-time reads that failed (database, broker)", ["source"],
)


class QueueDepths:
    """Messages waiting per queue, for one process (a redis client is kept, rebuilt after a fork).

    On a plain Redis broker (redis://, rediss://, unix://) the lengths of kombu's lists, priority lists
    included, in one pipelined round trip (~0.3 ms; kombu's own connection setup costs ~10 ms per
    scrape). Any other broker (sentinel://, amqp://) through kombu's passive declare.
    """

    def __init__(self, broker_url: str, queues: Sequence[str], timeout: float = BROKER_TIMEOUT) -> None:
        self._url = broker_url
        self._queues = tuple(queues)
        self._timeout = timeout
        self._direct = broker_url.startswith(("redis://", "rediss://", "unix://"))
        self._client: tuple[int, redis.Redis] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # the URL may hold a password
        return "QueueDepths()"

    def __call__(self) -> dict[str, int]:
        if not self._direct:
            return broker_queue_lengths(self._url, self._queues, self._timeout)
        pipe = self._redis().pipeline(transaction=False)
        for name in self._queues:
            for key in _priority_keys(name):
                pipe.llen(key)
        counts = iter(pipe.execute())
        return {name: sum(next(counts) for _ in _priority_keys(name)) for name in self._queues}

    def _redis(self) -> redis.Redis:
        with self._lock:
            if self._client is None or self._client[0] != os.getpid():
                client = redis.Redis.from_url(self._url, socket_connect_timeout=self._timeout,
                                              socket_timeout=self._timeout, health_check_interval=0)
                self._client = (os.getpid(), client)
            return self._client[1]


def _priority_keys(queue: str) -> list[str]:
    """The Redis lists kombu keeps for one queue: the queue itself (priority 0) and one per step."""
    return [queue, *(f"{queue}{REDIS_PRIORITY_SEP}{step}" for step in REDIS_PRIORITY_STEPS if step)]


def broker_queue_lengths(
    broker_url: str, queues: Sequence[str], timeout: float = BROKER_TIMEOUT
) -> dict[str, int]:
    """Messages waiting in each queue, by a passive declare (creates nothing) through kombu, so every
    broker Celery runs on answers: Redis (the list length, priority lists included) or RabbitMQ."""
    options: dict[str, Any] = {"socket_connect_timeout": timeout, "socket_timeout": timeout, "max_retries": 0}
    if os.environ.get("CELERY_SENTINEL_MASTER"):
        options["master_name"] = os.environ["CELERY_SENTINEL_MASTER"]
    lengths: dict[str, int] = {}
    with Connection(broker_url, connect_timeout=timeout, transport_options=options) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
        for name in queues:
            channel = conn.channel()
            try:
                lengths[name] = int(channel.queue_declare(queue=name, passive=True).message_count)
            except conn.channel_errors:
                lengths[name] = 0  # never declared, or (Redis) an empty list, which does not exist
            finally:
                with suppress(Exception):
                    channel.close()
    return lengths


# Extra figures other modules add (the shop notifications add qpay_events_undelivered): each gets a
# session and yields its metric families.
FigureReader = Callable[[Session], Iterator[Metric]]
EXTRA_READERS: list[FigureReader] = []


class BusinessCollector(Collector):
    """Reads the figures on each collect(); built once per web process."""

    def __init__(
        self,
        unit_of_work: Callable[[], AbstractContextManager[Session]],
        queue_lengths: Callable[[], dict[str, int]],
        sweep_interval: float,
    ) -> None:
        self._unit_of_work = unit_of_work
        self._queue_lengths = queue_lengths
        self._sweep_interval = sweep_interval

    def describe(self) -> list[Metric]:
        return []  # nothing is read at registration

    def collect(self) -> Iterator[Metric]:
        # The configured interval, so the sweep alert's threshold (3 x SWEEP_INTERVAL) follows the config.
        yield GaugeMetricFamily("qpay_sweep_interval_seconds", "The configured SWEEP_INTERVAL",
                                value=self._sweep_interval)
        yield from self._database()
        yield from self._broker()

    def _database(self) -> Iterator[Metric]:
        try:
            with self._unit_of_work() as session:
                figures = read_figures(session)
                extra = [m for reader in EXTRA_READERS for m in reader(session)]
        except Exception as exc:
            SCRAPE_ERRORS.labels("database").inc()
            log.warning("metrics: could not read the figures (%s)", type(exc).__name__)
            return
        yield from _figure_families(figures)
        yield from extra

    def _broker(self) -> Iterator[Metric]:
        try:
            lengths = self._queue_lengths()
        except Exception as exc:
            SCRAPE_ERRORS.labels("broker").inc()
            log.warning("metrics: could not read the queue lengths (%s)", type(exc).__name__)
            return
        queues = GaugeMetricFamily("qpay_queue_messages", "Messages waiting in the broker, per queue",
                                   labels=["queue"])
        for name, count in sorted(lengths.items()):
            queues.add_metric([name], count)
        yield queues


def _figure_families(figures: Figures) -> Iterator[Metric]:
    orders = GaugeMetricFamily("qpay_orders", "Orders waiting: pending (for the bank) or needs_review "
                               "(for an operator)", labels=["status"])
    for status, count in figures.orders.items():
        orders.add_metric([status], count)
    yield orders
    tokens = GaugeMetricFamily("qpay_tokens", "PayTokens not yet resolved: received (being resolved), "
                               "untrusted or dead (parked for an operator)", labels=["state"])
    for state, count in figures.tokens.items():
        tokens.add_metric([state], count)
    yield tokens
    yield GaugeMetricFamily("qpay_oldest_unresolved_token_age_seconds",
                            "Age of the oldest received, untrusted or dead PayToken since its first receipt "
                            "(0 when none)", value=figures.oldest_unresolved_token_age)
    if figures.last_clean_sweep is not None:
        yield GaugeMetricFamily("qpay_sweep_last_success_timestamp_seconds",
                                "When the last sweep pass without errors finished (Unix time)",
                                value=figures.last_clean_sweep)
