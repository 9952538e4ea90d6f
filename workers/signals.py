"""Process hooks: JSON logs for every Celery process, the task id on every line of a task, and fresh
connections in each forked pool process."""

from __future__ import annotations

import logging
from contextvars import Token
from typing import Any

from celery.app.trace import LOG_SUCCESS
from celery.concurrency import get_implementation
from celery.signals import (
    beat_init,
    celeryd_after_setup,
    celeryd_init,
    setup_logging,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_ready,
)

from core.db import dispose_engines
from core.db import size_pool as size_db_pool
from core.logging import bind_context, configure_logging, register_settings_secrets, reset_context
from core.queues import RESOLVE_TASK
from core.settings import get_settings
from metrics import exporter
from workers import recovery, redis_transport
from workers.bank import reset_client, size_pool

_bound: dict[str, Token[Any]] = {}


class _ResolveSuccessLine(logging.Filter):
    """Drops Celery's "Task … succeeded" line of the resolve task only: the task's own line ("token N
    resolved: settled", with its fields) already says it, and a JSON line per settlement was worth
    saving (issue 17). Every other task's success line, and every failure or retry line, stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (record.msg is LOG_SUCCESS and isinstance(args, dict) and args.get("name") == RESOLVE_TASK)


@setup_logging.connect
def _json_logs(**_: Any) -> None:
    """One JSON object per line, like the web process; Celery's own handlers are not installed."""
    settings = get_settings()
    configure_logging(settings.log_level)
    register_settings_secrets(settings)
    trace_log = logging.getLogger("celery.app.trace")
    if not any(isinstance(f, _ResolveSuccessLine) for f in trace_log.filters):
        trace_log.addFilter(_ResolveSuccessLine())
    # Celery's "Task … received" line, one per task, says nothing the task's own line does not
    # (issue 17: ~0.15 ms of a worker's CPU per settlement); kept at LOG_LEVEL=DEBUG. Celery reads
    # the level once, when it builds a task's strategy, so the line is not even formatted.
    debug = logging.getLogger().getEffectiveLevel() <= logging.DEBUG
    logging.getLogger("celery.worker.strategy").setLevel(logging.NOTSET if debug else logging.WARNING)


@celeryd_init.connect
def _worker_transport(conf: Any = None, **_: Any) -> None:
    """One Redis client per broker channel instead of one per operation (workers/redis_transport.py)."""
    if conf is not None:
        redis_transport.use_in_worker(conf)


@celeryd_after_setup.connect
def _size_pools(instance: Any = None, **_: Any) -> None:
    """The bank and database connection pools follow the worker's concurrency (before the pool
    forks), so no task slot of a threads pool waits for a connection another slot holds."""
    concurrency = getattr(instance, "concurrency", None)
    if isinstance(concurrency, int):
        size_pool(concurrency)
        size_db_pool(concurrency)
        from workers.notify import delivery_slots

        delivery_slots(concurrency)


@worker_init.connect
def _publish_events(**_: Any) -> None:
    """Order events committed in this worker (settlements, the sweep) start their delivery at once."""
    if get_settings().shop_webhook_url is not None:
        from core.services.events import set_publisher
        from workers.notify import send_delivery

        set_publisher(send_delivery)


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    """Two processes talking over one inherited socket corrupt each other's conversation."""
    dispose_engines()
    reset_client()
    from workers.notify import reset_pool

    reset_pool()
    exporter.start("worker")  # a prefork child runs tasks: it counts them and serves them itself


def _is_prefork(worker: Any) -> bool:
    pool = get_implementation(getattr(worker, "pool_cls", None) or "prefork")  # a name or a class
    return getattr(pool, "__module__", "") == "celery.concurrency.prefork"


@celeryd_after_setup.connect
def _worker_metrics(instance: Any = None, **_: Any) -> None:
    """The threads, gevent and solo pools run tasks in this process: its exporter serves them.
    (After the logging set-up, so the port it took is logged; prefork children start their own.)"""
    if not _is_prefork(instance):
        exporter.start("worker")


@beat_init.connect
def _beat_metrics(**_: Any) -> None:
    exporter.start("beat")


@worker_init.connect
def _attach_recovery(sender: Any = None, **_: Any) -> None:
    """Each message this worker takes records its owner (workers/redis_transport.py, recovery.owner)."""
    if sender is not None:
        recovery.attach(sender.app)


@worker_ready.connect
def _start_liveness(sender: Any = None, **_: Any) -> None:
    """A dead worker's unacknowledged tasks are restored in seconds, not after the visibility
    timeout (workers/recovery.py); the first pass also restores a crashed predecessor's."""
    if sender is not None:
        recovery.ensure_started(sender.app)


@task_prerun.connect
def _bind_task_id(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _bound[task_id] = bind_context(task_id=task_id)


@task_postrun.connect
def _unbind_task_id(task_id: str | None = None, **_: Any) -> None:
    token = _bound.pop(task_id or "", None)
    if token is not None:
        reset_context(token)
