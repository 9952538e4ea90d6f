"""Every error is JSON (`{"Status":"F","error":...}`), never an HTML page or a traceback."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from webhook.validation import InvalidInput

log = logging.getLogger(__name__)

# The database is unreachable or gone: the caller should retry later (the bank does).
DB_UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)


def error_response(status: int, error: str, **extra: Any) -> Response:
    body: dict[str, Any] = {"Status": "F", "error": error}
    body.update({k: v for k, v in extra.items() if v is not None})
    response = jsonify(body)
    response.status_code = status
    if status == 413:
        response.headers["Connection"] = "close"  # do not drain a huge body to keep the socket
    return response


def _invalid(exc: InvalidInput) -> Response:
    return error_response(exc.status, exc.error, field=exc.field)


def _http(exc: HTTPException) -> Response:
    response = error_response(exc.code or 500, exc.description or exc.name)
    for name in ("Allow", "WWW-Authenticate"):
        if name in exc.get_response().headers:
            response.headers[name] = exc.get_response().headers[name]
    return response


def _db_down(exc: Exception) -> Response:
    log.error("database unavailable", extra={"error": type(exc).__name__})
    return error_response(503, "database unavailable")


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error")
    return error_response(500, "internal error")


def answer_for(exc: Exception) -> Response:
    """The answer (and log line) for an exception, as the app's error handlers give it: for a path
    that answers without Flask's dispatch (webhook/ingest.py). Needs an app context (jsonify)."""
    if isinstance(exc, InvalidInput):
        return _invalid(exc)
    if isinstance(exc, HTTPException):
        return _http(exc)
    if isinstance(exc, DB_UNAVAILABLE):
        return _db_down(exc)
    return _unexpected(exc)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(InvalidInput, _invalid)
    app.register_error_handler(HTTPException, _http)
    for exc_class in DB_UNAVAILABLE:
        app.register_error_handler(exc_class, _db_down)
    app.register_error_handler(Exception, _unexpected)
