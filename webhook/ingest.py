"""POST /qpay/backend answered as a plain WSGI call, around the Flask app.

The bank's callback is the one request the web serves at volume, and Flask's per-request machinery
(request and app contexts, routing, three hooks, a Response object, the error handler lookup) cost
more CPU than the callback's own work. So this middleware answers it directly with the same parts
the Flask view uses (webhook/callbacks.py: caller check, body parsing, record and enqueue, metrics;
webhook/requestlog.py: request id and access line; webhook/errors.py: every error answer and its log
line), and hands everything else to Flask untouched: other paths and methods, a body without a
Content-Length (chunked) or one larger than the cap. Nothing has been read when it hands over. The
answers are the view's, byte for byte: the receiver's tests run through this path, and
tests/unit/webhook/test_webhook_ingest.py compares the two.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING

from werkzeug.http import parse_options_header
from werkzeug.wrappers import Response
from werkzeug.wsgi import get_content_length

from core.logging import bind_context, reset_context
from core.states import Source
from webhook.bodies import read_stream
from webhook.callbacks import ACK, caller_refused, counted, record_and_enqueue
from webhook.deps import Deps
from webhook.errors import answer_for, error_response
from webhook.headers import NOSNIFF
from webhook.requestlog import log_access, request_id_for
from webhook.validation import MAX_CALLBACK_BODY, parse_backend_body

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from flask import Flask

PATH = "/qpay/backend"
_OK = "200 OK"
_ACK_HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(ACK))), NOSNIFF]


def _content_length(environ: WSGIEnvironment) -> int | None:
    """The body's length as werkzeug reads it for `request.content_length` when it is within the cap;
    None (chunked, or over the cap) hands the request to Flask."""
    length = get_content_length(environ)
    return length if length is not None and length <= MAX_CALLBACK_BODY else None


def _mimetype(environ: WSGIEnvironment) -> str:
    """What werkzeug's `request.mimetype` gives: the media type without parameters, lower case."""
    return parse_options_header(environ.get("CONTENT_TYPE", ""))[0].lower()


class CallbackIngest:
    """WSGI middleware: `POST /qpay/backend` here, everything else to `app.wsgi_app`."""

    def __init__(self, app: Flask, wsgi_app: WSGIApplication) -> None:
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.wsgi_app(environ, start_response)
        length = _content_length(environ)
        if length is None:
            return self.wsgi_app(environ, start_response)
        d: Deps = self.app.extensions["qpay"]
        started = time.monotonic()
        request_id = request_id_for(environ.get("HTTP_X_REQUEST_ID"))
        token = bind_context(request_id=request_id)
        try:
            if caller_refused(d.settings, environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR")):
                return self._answer(partial(error_response, 403, "forbidden"), environ, start_response,
                                    request_id, started, length)
            try:
                with counted(Source.BACKEND):
                    raw = read_stream(environ["wsgi.input"], length)
                    callback = parse_backend_body(raw, _mimetype(environ), d.shops)
                    fields = record_and_enqueue(d, callback, Source.BACKEND)
            except Exception as exc:  # every failure gets the app's own answer and log line
                return self._answer(partial(answer_for, exc), environ, start_response, request_id, started,
                                    length)
            log_access("POST", PATH, 200, started, length, fields)
            start_response(_OK, [*_ACK_HEADERS, ("X-Request-ID", request_id)])
            return [ACK]
        finally:
            reset_context(token)

    def _answer(self, build: Callable[[], Response], environ: WSGIEnvironment, start_response: StartResponse,
                request_id: str, started: float, length: int) -> Iterable[bytes]:
        """An answer built by the app's own functions (they need an app context: jsonify), with the
        headers and access line every answer of the app gets."""
        with self.app.app_context():
            response = build()
        response.headers[NOSNIFF[0]] = NOSNIFF[1]
        response.headers["X-Request-ID"] = request_id
        log_access("POST", PATH, response.status_code, started, length, {})
        return response(environ, start_response)
