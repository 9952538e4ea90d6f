"""Gunicorn settings for `gunicorn -c gunicorn.conf.py 'webhook:create_app()'` (Procfile `web`).

Environment: PORT (Heroku) or WEB_BIND (host:port) for the address, WEB_CONCURRENCY processes,
WEB_THREADS threads each, WEB_TIMEOUT seconds per request, WEB_MAX_REQUESTS requests per worker
before it is recycled. Logs are JSON lines on stdout; gunicorn's own access log is off because it
would print raw paths (a PayToken can be in one): the app writes a redacted access line per request
instead.

Metrics: every worker process writes its counters to PROMETHEUS_MULTIPROC_DIR (set here, emptied at
start; a private temporary directory when unset) and GET /metrics on any worker sums them all
(metrics/multiproc.py).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from gunicorn.glogging import Logger

from core.env import env_int


def _int(name: str, default: int) -> int:
    """A bad value stops the server with a message naming the variable (never a silent default)."""
    return env_int(os.environ, name, default, minimum=1)


bind = os.environ.get("WEB_BIND") or f"0.0.0.0:{_int('PORT', 8000)}"
workers = _int("WEB_CONCURRENCY", 2)
worker_class = "gthread"
threads = _int("WEB_THREADS", 4)
timeout = _int("WEB_TIMEOUT", 30)  # a stuck request is killed; the bank resends what we did not ack
graceful_timeout = 20
keepalive = 5
# Recycle a worker after this many requests (a guard against slow leaks), with jitter so they do not
# restart together. 5,000 recycled each worker every few seconds at a few hundred callbacks/s, and each
# restart costs an app import, a fork and fresh connections; 100,000 is minutes at full load, days
# at a shop's normal traffic.
max_requests = _int("WEB_MAX_REQUESTS", 100_000)
max_requests_jitter = max_requests // 10
limit_request_line = 4094
limit_request_fields = 64
limit_request_field_size = 8190
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
preload_app = False
# Several gunicorns share a host in tests and in `make up`: no shared control socket in $HOME.
control_socket_disable = True
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()

logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "core.logging.JsonFormatter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
        "error_console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
    },
    # The app's JSON handler: create_app's configure_logging sees it and adds no second one.
    "root": {"level": loglevel.upper(), "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {"level": loglevel.upper(), "handlers": ["error_console"], "propagate": False},
        "gunicorn.access": {"level": "WARNING", "handlers": ["console"], "propagate": False},
    },
}


class QuietAccessLogger(Logger):
    """Gunicorn builds its access-log fields for every request whenever a logconfig_dict is set, even
    though gunicorn.access only passes warnings here (~4% of the receiver's CPU): skip that work."""

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        if self.access_log.isEnabledFor(logging.INFO):
            super().access(resp, req, environ, request_time)


logger_class = QuietAccessLogger


_metrics_dir: tuple[Any, bool] | None = None


def on_starting(server: Any) -> None:
    """In the master, before any worker imports prometheus_client: the multiprocess directory."""
    global _metrics_dir
    from metrics import multiproc

    _metrics_dir = multiproc.prepare()


def child_exit(server: Any, worker: Any) -> None:
    """A recycled or crashed worker's live gauges must not linger in the totals."""
    from metrics import multiproc

    multiproc.process_exited(worker.pid)


def on_exit(server: Any) -> None:
    if _metrics_dir is not None:
        from metrics import multiproc

        multiproc.cleanup(*_metrics_dir)


def post_fork(server: Any, worker: Any) -> None:
    """A forked worker must not share the master's database sockets."""
    from core.db import dispose_engines

    dispose_engines()
