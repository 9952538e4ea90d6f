"""Flower with the repo's config: its API answers with basic auth, 401 without; no auth, no start."""

from __future__ import annotations

import pytest
import redis
import requests

from core.queues import CALLBACK_QUEUE, NOTIFY_QUEUE, SWEEP_QUEUE
from tests.support import procs, services
from tests.support.poll import wait_for

pytestmark = pytest.mark.integration


def _flower(redis_url: str, **env: str) -> tuple[procs.Proc, str]:
    port = services.free_port()
    full = procs.base_env(REDIS_URL=redis_url, FLOWER_PORT=str(port), **env)
    argv = [str(procs.BIN / "celery"), "-A", "workers", "flower", "--conf=workers/flowerconfig.py"]
    return procs.Proc("flower", argv, full).start(), f"http://127.0.0.1:{port}"


def test_flower_answers_its_api_with_basic_auth_and_refuses_without(redis_server):
    proc, base = _flower(redis_server.url, FLOWER_BASIC_AUTH="ops:correct-horse")
    try:
        proc.wait_ready(lambda: procs.http_ok(f"{base}/healthcheck"), timeout=30)
        ok = requests.get(f"{base}/api/workers", auth=("ops", "correct-horse"), timeout=5)
        anonymous = requests.get(f"{base}/api/workers", timeout=5)
        wrong = requests.get(f"{base}/api/workers", auth=("ops", "wrong"), timeout=5)
        assert ok.status_code == 200, ok.text
        assert anonymous.status_code == 401
        assert wrong.status_code == 401
    finally:
        proc.stop()


def test_flower_will_not_start_without_auth(redis_server):
    proc, _ = _flower(redis_server.url)
    assert proc.popen is not None
    wait_for(lambda: not proc.alive(), timeout=30, message="flower to refuse to start")
    assert proc.popen.returncode != 0
    assert "refusing to start Flower without authentication" in proc.log()




def test_flower_shows_the_depth_of_the_callbacks_sweep_and_notifications_queues(redis_server):
    # given messages waiting on every queue and no worker online to take them
    client = redis.Redis.from_url(redis_server.url)
    client.lpush(CALLBACK_QUEUE, *[b"{}"] * 3)
    client.lpush(SWEEP_QUEUE, b"{}")
    client.lpush(NOTIFY_QUEUE, *[b"{}"] * 2)
    proc, base = _flower(redis_server.url, FLOWER_BASIC_AUTH="ops:correct-horse")
    try:
        proc.wait_ready(lambda: procs.http_ok(f"{base}/healthcheck"), timeout=30)
        # when ops look at Flower's broker view (its API)
        resp = requests.get(f"{base}/api/queues/length", auth=("ops", "correct-horse"), timeout=10)
        # then it lists each queue with the messages waiting there
        assert resp.status_code == 200, resp.text
        depths = {q["name"]: q["messages"] for q in resp.json()["active_queues"]}
        assert depths == {CALLBACK_QUEUE: 3, SWEEP_QUEUE: 1, NOTIFY_QUEUE: 2}
        page = requests.get(f"{base}/broker", auth=("ops", "correct-horse"), timeout=10)
        assert page.status_code == 200
        assert CALLBACK_QUEUE in page.text
        assert SWEEP_QUEUE in page.text
        assert NOTIFY_QUEUE in page.text
    finally:
        proc.stop()
        client.delete(CALLBACK_QUEUE, SWEEP_QUEUE, NOTIFY_QUEUE)
        client.close()
