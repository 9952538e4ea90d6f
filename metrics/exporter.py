"""The HTTP exporter of worker and beat processes: WORKER_METRICS_PORT / BEAT_METRICS_PORT (off when
unset), on METRICS_ADDRESS (default 127.0.0.1; docker-compose sets 0.0.0.0 on its private network).

Several workers on one host never collide: the port is the first of a range of METRICS_PORT_SPAN
(default 16) and each process takes the first free one, logging which. So `WORKER_METRICS_PORT=9101`
gives the first worker 9101, the second 9102, and Prometheus scrapes 9101-9116 (a port nobody holds is
simply down, which the alert rules ignore for workers beyond the first). One exporter per process that
runs tasks: the worker's main process with the threads, gevent or solo pool, each child with prefork.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from prometheus_client import REGISTRY, start_http_server

from core.env import env_int
from core.settings import get_settings
from metrics import defs

log = logging.getLogger(__name__)

DEFAULT_SPAN = 16


def start(kind: str, env: Mapping[str, str] | None = None) -> int | None:
    """Start this process's exporter (`kind` is worker or beat); the port it listens on, or None."""
    env = os.environ if env is None else env
    variable = f"{kind.upper()}_METRICS_PORT"
    base = env_int(env, variable, 0, minimum=0)
    if not base:
        return None
    span = env_int(env, "METRICS_PORT_SPAN", DEFAULT_SPAN, minimum=1)
    address = env.get("METRICS_ADDRESS") or "127.0.0.1"
    defs.preset(get_settings().shop_numbers)
    for port in range(base, min(base + span, 65536)):
        try:
            start_http_server(port, addr=address, registry=REGISTRY)
        except OSError:
            continue  # another process of this host holds it: take the next one
        log.info("metrics: %s exporter on http://%s:%d/metrics", kind, address, port,
                 extra={"metrics_port": port})
        return port
    log.error("metrics: no free port in %s..%d for the %s exporter; metrics are off in this process",
              variable, base + span - 1, kind)
    return None
