"""Per-request logging context and one JSON access line per request.

The request id comes from X-Request-ID when it is sane, else a new one; it is echoed back. The
access line names the route template, not the raw path, so a PayToken in a URL is never logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from typing import Any

from flask import Flask, Response, g, request

from core.logging import bind_context, reset_context

log = logging.getLogger("webhook.access")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_QUIET = frozenset({"/healthz", "/readyz"})


def request_id_for(given: str | None) -> str:
    """The caller's X-Request-ID when it is sane, else 32 random hex digits."""
    return given if given and _REQUEST_ID.fullmatch(given) else os.urandom(16).hex()


def log_access(method: str, route: str, status: int, started: float | None, bytes_in: int | None,
               fields: dict[str, Any]) -> None:
    """The request's one access line; `fields` are what the view recorded (callbacks: token id, ...)."""
    log.log(logging.DEBUG if route in _QUIET else logging.INFO, "request", extra={
        "method": method,
        "route": route,
        "status": status,
        "duration_ms": round((time.monotonic() - started) * 1000, 1) if started else None,
        "bytes_in": bytes_in,
        **fields,
    })


def register_request_logging(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        # 32 random hex digits (uuid4().hex built a UUID object per request for the same thing)
        request_id = request_id_for(request.headers.get("X-Request-ID"))
        state = g._get_current_object()  # one context lookup for the three names
        state.request_id, state.started = request_id, time.monotonic()
        state.log_token = bind_context(request_id=request_id)

    @app.after_request
    def _finish(response: Response) -> Response:
        state = g._get_current_object()
        request_id = getattr(state, "request_id", None)
        if request_id:
            response.headers["X-Request-ID"] = request_id
        rule = request.url_rule
        log_access(request.method, rule.rule if rule is not None else "(unmatched)", response.status_code,
                   getattr(state, "started", None), request.content_length,
                   getattr(state, "access_fields", {}))
        return response

    @app.teardown_request
    def _reset(_exc: BaseException | None) -> None:
        token = g.pop("log_token", None)
        if token is not None:
            with contextlib.suppress(ValueError):  # created in another context: leave it
                reset_context(token)
