"""Which broker each process uses (BROKER_URL, else REDIS_URL) and how RabbitMQ is configured:
quorum queues on topic exchanges, publisher confirms, a retry base that native delayed delivery takes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.endpoints import DEFAULT_REDIS_URL, broker_url_from
from core.queues import CALLBACK_QUEUE, SWEEP_QUEUE, amqp_queues
from webhook.enqueue import CeleryEnqueuer
from workers.beatlock import lock_url

ROOT = Path(__file__).resolve().parents[3]
AMQP = "amqp://guest:guest@127.0.0.1:5672/qpay"
REDIS = "redis://127.0.0.1:6379/3"


@pytest.mark.parametrize(("env", "expected"), [
    ({"BROKER_URL": AMQP, "REDIS_URL": REDIS}, AMQP),
    ({"REDIS_URL": REDIS}, REDIS),
    ({"BROKER_URL": "", "REDIS_URL": REDIS}, REDIS),
    ({}, DEFAULT_REDIS_URL),
])
def test_broker_url_wins_over_redis_url(env: dict[str, str], expected: str) -> None:
    assert broker_url_from(env) == expected


@pytest.mark.parametrize(("env", "broker", "expected"), [
    ({}, REDIS, REDIS),
    ({"REDIS_URL": REDIS}, AMQP, REDIS),  # RabbitMQ broker beside a Redis (Heroku's add-on)
    ({"BEAT_LOCK_URL": "redis://lock:6379/0", "REDIS_URL": REDIS}, AMQP, "redis://lock:6379/0"),
])
def test_beats_lock_finds_a_plain_redis(env: dict[str, str], broker: str, expected: str) -> None:
    assert lock_url(env, broker_url=broker) == expected


def test_beats_lock_refuses_an_amqp_broker_without_a_redis() -> None:
    with pytest.raises(RuntimeError, match="BEAT_LOCK_URL"):
        lock_url({}, broker_url=AMQP)


def _amqp_config(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("QPAY_", "RESOLVE_", "CELERY_", "BROKER_", "REDIS_"))}
    code = ("import json; from workers import app; c = app.conf; "
            "print(json.dumps({'queues': {n: [q.exchange.type, q.queue_arguments, q.durable] "
            "for n, q in app.amqp.queues.items()}, 'transport': c.broker_transport_options, "
            "'detect': c.worker_detect_quorum_queues, 'url': c.broker_url}))")
    return subprocess.run([sys.executable, "-c", code], env={**clean, "PYTHONPATH": str(ROOT), **env},
                          capture_output=True, text=True, timeout=60, check=False)


def test_on_rabbitmq_the_queues_are_quorum_on_topic_exchanges_with_publisher_confirms() -> None:
    result = _amqp_config(BROKER_URL=AMQP, REDIS_URL=REDIS)
    assert result.returncode == 0, result.stderr[-2000:]
    conf = json.loads(result.stdout.strip().splitlines()[-1])
    assert conf["url"] == AMQP
    for name in (CALLBACK_QUEUE, SWEEP_QUEUE):
        assert conf["queues"][name] == ["topic", {"x-queue-type": "quorum"}, True]
    assert conf["transport"]["confirm_publish"] is True
    assert "visibility_timeout" not in conf["transport"]
    assert conf["detect"] is True


def test_on_rabbitmq_a_retry_base_under_2_s_is_refused() -> None:
    # native delayed delivery routes a countdown by whole seconds: one under 1 s would fail to publish
    result = _amqp_config(BROKER_URL=AMQP, RESOLVE_RETRY_BASE="0.5")
    assert result.returncode != 0
    assert "RESOLVE_RETRY_BASE must be at least 2 with an AMQP broker" in result.stderr


def test_the_web_declares_the_queues_as_the_workers_do() -> None:
    sender = CeleryEnqueuer(AMQP)
    app = sender._celery()
    queue = app.amqp.queues[CALLBACK_QUEUE]
    declared = amqp_queues()[CALLBACK_QUEUE]
    assert queue.exchange.type == declared["exchange_type"]
    assert queue.queue_arguments == declared["queue_arguments"]
    assert app.conf.broker_transport_options["confirm_publish"] is True
    assert not sender._direct  # LPUSH only on redis://


@pytest.mark.parametrize(("url", "transport"), [
    ("redis://127.0.0.1:6379/3", "workers.redis_transport:Transport"),
    ("rediss://cache.example:6380/0", "workers.redis_transport:Transport"),
    ("sentinel://127.0.0.1:26379", None),
    (AMQP, None),
])
def test_a_worker_on_redis_shares_one_client_per_channel_and_flower_keeps_kombus_transport(
    url: str, transport: str | None
) -> None:
    from types import SimpleNamespace

    from celery.signals import celeryd_init

    conf = SimpleNamespace(broker_url=url, broker_transport=None)
    celeryd_init.send(sender="w1@host", instance=None, conf=conf, options={})
    assert conf.broker_transport == transport
    from workers import app  # Flower and beat never send celeryd_init: their connection is kombu's own

    assert app.conf.broker_transport is None


def test_the_shared_client_is_reused_and_rebuilt_for_a_new_pool() -> None:
    from types import SimpleNamespace

    from workers.redis_transport import Channel

    channel = object.__new__(Channel)
    pools = iter([SimpleNamespace(connection_kwargs={}), SimpleNamespace(connection_kwargs={})])
    pool = next(pools)
    built: list[object] = []

    class Client:
        def __init__(self, connection_pool: object) -> None:
            self.connection_pool = connection_pool
            built.append(self)

    channel.Client, channel._pool, channel._async_pool = Client, pool, None
    first = channel._create_client()
    assert channel._create_client() is first  # one client while the pool stays
    channel._pool = next(pools)  # a reconnect builds a new pool
    assert channel._create_client() is not first
    assert len(built) == 2
