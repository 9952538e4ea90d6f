"""Celery's success line: dropped for the resolve task only (its own line says it), kept for the rest;
its per-task received line: only at LOG_LEVEL=DEBUG."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace

import pytest
from celery.app.trace import LOG_SUCCESS

from core.queues import RESOLVE_TASK, SWEEP_TASK
from core.settings import load_settings
from workers import signals


def _success(name: str) -> logging.LogRecord:
    context = {"id": "t1", "name": name, "return_value": "'settled'", "runtime": 0.01, "args": "(1,)",
               "kwargs": "{}"}
    return logging.LogRecord("celery.app.trace", logging.INFO, __file__, 1, LOG_SUCCESS, (context,), None)


def test_the_resolve_tasks_success_line_is_dropped_and_others_stay() -> None:
    signals._json_logs()
    trace_log = logging.getLogger("celery.app.trace")
    assert sum(isinstance(f, signals._ResolveSuccessLine) for f in trace_log.filters) == 1
    assert not trace_log.filter(_success(RESOLVE_TASK))
    assert trace_log.filter(_success(SWEEP_TASK))
    failure = logging.LogRecord("celery.app.trace", logging.ERROR, __file__, 1, "Task %(name)s raised",
                                ({"name": RESOLVE_TASK},), None)
    assert trace_log.filter(failure)


def test_setting_up_logging_twice_adds_the_filter_once() -> None:
    signals._json_logs()
    signals._json_logs()
    trace_log = logging.getLogger("celery.app.trace")
    assert sum(isinstance(f, signals._ResolveSuccessLine) for f in trace_log.filters) == 1


@pytest.fixture
def levels() -> Iterator[None]:
    strategy, root = logging.getLogger("celery.worker.strategy"), logging.getLogger()
    saved = (strategy.level, root.level)
    yield
    strategy.setLevel(saved[0])
    root.setLevel(saved[1])


@pytest.mark.usefixtures("levels")
@pytest.mark.parametrize(("level", "received_line"), [("INFO", False), ("WARNING", False), ("DEBUG", True)])
def test_celerys_received_line_is_written_only_at_debug(monkeypatch, level: str, received_line: bool) -> None:
    # Given the worker's logging set up at LOG_LEVEL=level (after another level, so nothing is left over)
    for given in ("DEBUG", "INFO", level):
        settings = replace(load_settings({}), log_level=given)
        monkeypatch.setattr(signals, "get_settings", lambda s=settings: s)
        signals._json_logs()
    # Then Celery's strategy (which reads the level once per task type) writes its INFO line or not
    assert logging.getLogger("celery.worker.strategy").isEnabledFor(logging.INFO) is received_line
    assert logging.getLogger("celery.worker.strategy").isEnabledFor(logging.ERROR)
