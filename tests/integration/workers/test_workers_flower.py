"""Flower with the repo's config: its API answers with basic auth, 401 without; no auth, no start."""

from __future__ import annotations

import pytest
import redis
import requests
from celery import Celery

from core.queues import CALLBACK_QUEUE, NOTIFY_QUEUE, RESOLVE_TASK, SWEEP_QUEUE
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


def test_flower_sees_every_task_end_although_the_worker_publishes_its_events_in_batches(redis_server):
    # given Flower watching, and a real worker whose task events are batched (workers/consumer.py)
    flower, base = _flower(redis_server.url, FLOWER_BASIC_AUTH="ops:correct-horse")
    worker = None
    try:
        flower.wait_ready(lambda: procs.http_ok(f"{base}/healthcheck"), timeout=30)
        worker = procs.start_worker(procs.base_env(REDIS_URL=redis_server.url), name="events")
        # when a burst of tasks runs, and then nothing more: the last events have no successor to
        # carry them, only the batch's timer
        sender = Celery(broker=redis_server.url)
        ids = [sender.send_task(RESOLVE_TASK, args=[f"not-an-id-{i}"], queue=CALLBACK_QUEUE).id
               for i in range(7)]

        # then Flower shows every one of them finished
        def states() -> dict[str, object] | None:
            tasks = requests.get(f"{base}/api/tasks", auth=("ops", "correct-horse"), timeout=5).json()
            seen = {task_id: tasks.get(task_id, {}).get("state") for task_id in ids}
            return seen if all(state == "SUCCESS" for state in seen.values()) else None

        assert wait_for(states, timeout=30, message="Flower to show every task succeeded")
    finally:
        if worker is not None:
            worker.stop()
        flower.stop()
