"""The Celery and Flower configuration: the reliability settings and the refusals."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from core.backoff import retry_countdown
from core.queues import CALLBACK_QUEUE, RESOLVE_TASK, SWEEP_QUEUE, SWEEP_TASK

ROOT = Path(__file__).resolve().parents[3]
FLOWER_CONF = ROOT / "workers" / "flowerconfig.py"


def _config_in_subprocess(**env: str) -> subprocess.CompletedProcess[str]:
    """Build the app's config in a fresh interpreter: settings are read once per process."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("QPAY_", "RESOLVE_", "CELERY_"))}
    code = "from workers import app; print(app.conf.broker_transport_options['visibility_timeout'])"
    return subprocess.run([sys.executable, "-c", code], env={**clean, "PYTHONPATH": str(ROOT), **env},
                          capture_output=True, text=True, timeout=60, check=False)


def test_delivery_guarantees_are_on():
    from workers import app

    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.accept_content == ["json"]
    assert conf.task_serializer == "json"
    assert conf.result_backend is None
    assert conf.task_ignore_result is True
    assert conf.worker_send_task_events is True
    assert conf.task_send_sent_event is True
    assert conf.broker_connection_retry_on_startup is True
    assert conf.broker_transport_options["visibility_timeout"] == 3600


def test_callbacks_and_sweeps_are_routed_to_separate_queues():
    from workers import app

    assert app.conf.task_routes[RESOLVE_TASK] == {"queue": CALLBACK_QUEUE}
    assert app.conf.task_routes[SWEEP_TASK] == {"queue": SWEEP_QUEUE}
    assert app.conf.beat_schedule["qpay-sweep"]["options"]["queue"] == SWEEP_QUEUE


def test_both_tasks_are_registered_with_time_limits_below_the_visibility_timeout():
    from workers import app

    app.loader.import_default_modules()
    visibility = app.conf.broker_transport_options["visibility_timeout"]
    for name in (RESOLVE_TASK, SWEEP_TASK):
        task = app.tasks[name]
        assert 0 < task.soft_time_limit < task.time_limit < visibility


def test_a_short_visibility_timeout_is_read_from_the_environment():
    result = _config_in_subprocess(
        CELERY_VISIBILITY_TIMEOUT="8", RESOLVE_RETRY_BASE="0.2", RESOLVE_RETRY_CAP="2"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "8.0"


def test_a_retry_cap_close_to_the_visibility_timeout_is_refused():
    result = _config_in_subprocess(CELERY_VISIBILITY_TIMEOUT="100", RESOLVE_RETRY_CAP="60")
    assert result.returncode != 0
    assert "RESOLVE_RETRY_CAP must stay well below CELERY_VISIBILITY_TIMEOUT" in result.stderr



@pytest.mark.parametrize(("name", "value", "message"), [
    ("CELERY_VISIBILITY_TIMEOUT", "an hour", "CELERY_VISIBILITY_TIMEOUT must be a number"),
    ("CELERY_VISIBILITY_TIMEOUT", "0.5", "CELERY_VISIBILITY_TIMEOUT must be at least 1.0"),
    ("BEAT_LOCK_TTL", "1", "BEAT_LOCK_TTL must be at least 3.0"),
])
def test_a_bad_celery_number_is_refused_naming_the_variable(name, value, message):
    # the same parser (and messages) as core.settings
    result = _config_in_subprocess(**{name: value})
    assert result.returncode != 0
    assert f"SettingsError: {message}" in result.stderr
    assert repr(value) not in result.stderr

@pytest.mark.parametrize("retries", [0, 1, 2, 3, 4])
def test_the_retry_delay_lies_between_half_and_all_of_the_exponential_step(retries):
    step = 0.5 * 2**retries
    low = retry_countdown(retries, base=0.5, cap=100, rand=lambda a, b: a)
    high = retry_countdown(retries, base=0.5, cap=100, rand=lambda a, b: b)
    assert (low, high) == (step / 2, step)


def test_the_retry_delay_never_exceeds_the_cap():
    assert retry_countdown(40, base=2, cap=300, rand=lambda a, b: b) == 300
    assert retry_countdown(40, base=2, cap=300, rand=lambda a, b: a) == 150


def _flower_options(monkeypatch, **env: str) -> dict:
    for name in ("FLOWER_BASIC_AUTH", "FLOWER_ALLOW_NO_AUTH", "FLOWER_PORT", "FLOWER_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(FLOWER_CONF))


def test_flower_takes_basic_auth_a_bounded_history_and_listens_on_loopback(monkeypatch):
    options = _flower_options(monkeypatch, FLOWER_BASIC_AUTH="ops:s3cret", FLOWER_PORT="5601")
    assert options["basic_auth"] == ["ops:s3cret"]
    assert (options["address"], options["port"], options["max_tasks"]) == ("127.0.0.1", 5601, 10000)


def test_flower_refuses_to_start_without_auth(monkeypatch):
    with pytest.raises(SystemExit, match="refusing to start Flower without authentication"):
        _flower_options(monkeypatch)


def test_flower_without_auth_only_when_the_demo_says_so(monkeypatch):
    options = _flower_options(monkeypatch, FLOWER_ALLOW_NO_AUTH="1")
    assert options["basic_auth"] == []


def test_a_malformed_flower_password_is_refused_without_echoing_it(monkeypatch):
    with pytest.raises(SystemExit) as excinfo:
        _flower_options(monkeypatch, FLOWER_BASIC_AUTH="no-colon-secret")
    assert "no-colon-secret" not in str(excinfo.value)
