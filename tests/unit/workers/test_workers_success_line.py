"""Celery's success line: dropped for the resolve task only (its own line says it), kept for the rest."""

from __future__ import annotations

import logging

from celery.app.trace import LOG_SUCCESS

from core.queues import RESOLVE_TASK, SWEEP_TASK
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
