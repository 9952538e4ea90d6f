"""The worker's sweep enqueue (`workers.tasks._enqueue_resolve`) keeps the sweep's Enqueue contract:
True when the broker took the task, False (never an exception) when the broker is down."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from kombu.exceptions import OperationalError as BrokerError

from core.models import PayToken
from core.services.sweep import run_sweep
from tests.support.services import free_port
from tests.unit.workers.conftest import NOW, FakeBank, add_token
from workers import tasks

ROOT = Path(__file__).resolve().parents[3]


def test_a_task_the_broker_takes_is_reported_sent(monkeypatch):
    # given a broker that accepts the message
    sent: list[dict] = []
    monkeypatch.setattr(tasks.resolve_pay_token, "apply_async", lambda **kw: sent.append(kw))
    # when the sweep enqueues token 7
    ok = tasks._enqueue_resolve(7)
    # then
    assert ok is True
    assert sent == [{"args": [7], "queue": "callbacks"}]


def test_a_broker_outage_is_reported_as_false_and_the_sweep_counts_it(monkeypatch, caplog, uow, settings):
    # given a stale token and a broker that fails every publish (after Celery's own publish retries)
    token = add_token(uow, "f" * 64, received=NOW.replace(minute=0))

    def down(**_kw):
        raise BrokerError("Error 111 connecting to 127.0.0.1:6479. Connection refused.")

    monkeypatch.setattr(tasks.resolve_pay_token, "apply_async", down)

    # when the worker's sweep runs with the worker's enqueue
    with caplog.at_level(logging.WARNING):
        counts = run_sweep(uow, FakeBank(), settings, tasks._enqueue_resolve, now=NOW)

    # then the failed enqueue is one counted error, logged without a traceback, and the token stays due
    assert (counts.requeued, counts.errors) == (0, 1)
    warned = [r for r in caplog.records if r.name == "workers.tasks"]
    assert [r.levelno for r in warned] == [logging.WARNING]
    assert warned[0].exc_info is None
    assert "OperationalError" in warned[0].getMessage()
    with uow() as s:
        assert s.get(PayToken, token).last_enqueued_at is None


def test_an_unreachable_broker_returns_false_instead_of_raising():
    # given a worker process whose REDIS_URL points at a port nobody listens on
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QPAY_", "RESOLVE_", "CELERY_"))}
    env.update(PYTHONPATH=str(ROOT), REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    code = "from workers.tasks import _enqueue_resolve; print('sent:', _enqueue_resolve(1))"

    # when the sweep's enqueue publishes for real
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            timeout=120, check=False)

    # then it answers False after Celery's short publish retries, with a warning and no traceback
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "sent: False"
    assert "Traceback" not in result.stderr
