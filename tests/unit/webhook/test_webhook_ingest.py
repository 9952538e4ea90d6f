"""POST /qpay/backend is answered by webhook/ingest.py without Flask's dispatch: every answer, header,
access line and counter must be the one the Flask view gives for the same request."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from prometheus_client import REGISTRY
from sqlalchemy.exc import OperationalError

from core.env import ip_networks
from tests.unit.webhook.helpers import SHOP, TOKEN, FakeEnqueuer
from webhook.ingest import CallbackIngest

REQUEST_ID = "parity-request-1"
JSON = "application/json"


def _flask_only(app: Flask) -> Callable[[], None]:
    """Take the middleware out (the Flask view answers everything); returns the undo."""
    ingest = app.wsgi_app
    assert isinstance(ingest, CallbackIngest)
    app.wsgi_app = ingest.wsgi_app  # type: ignore[method-assign,assignment]

    def undo() -> None:
        app.wsgi_app = ingest  # type: ignore[method-assign]

    return undo


def _counter(result: str) -> float:
    return REGISTRY.get_sample_value("qpay_callbacks_total", {"source": "backend", "result": result}) or 0.0


def _access_lines(records: list[logging.LogRecord]) -> list[dict[str, Any]]:
    skip = {"duration_ms"}
    lines = []
    for record in records:
        if record.name == "webhook.access":
            lines.append({k: v for k, v in vars(record).items()
                          if k in {"method", "route", "status", "bytes_in", "token_id", "receipts", "state",
                                   "source", "enqueued"} and k not in skip})
    return lines


def _post(app: Flask, body: bytes, content_type: str | None = JSON, remote: str = "127.0.0.1",
          headers: dict[str, str] | None = None) -> Any:
    return app.test_client().post("/qpay/backend", data=body, content_type=content_type,
                                  headers={"X-Request-ID": REQUEST_ID, **(headers or {})},
                                  environ_base={"REMOTE_ADDR": remote})


def _answer(app: Flask, caplog: pytest.LogCaptureFixture, send: Callable[[], Any]) -> dict[str, Any]:
    counters = {r: _counter(r) for r in ("stored", "duplicate", "invalid", "db_unavailable")}
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        resp = send()
    headers = sorted((k, v) for k, v in resp.headers.items() if k != "Date")
    return {
        "status": resp.status_code,
        "body": resp.get_data(),
        "headers": headers,
        "access": _access_lines(caplog.records),
        "logged": sorted((r.name, r.levelname, r.getMessage()) for r in caplog.records
                         if r.name != "webhook.access"),
        "counted": {r: _counter(r) - before for r, before in counters.items()},
    }


@contextmanager
def _both(app: Flask) -> Iterator[Callable[[Callable[[], Any], pytest.LogCaptureFixture], None]]:
    def compare(send: Callable[[], Any], caplog: pytest.LogCaptureFixture) -> None:
        fast = _answer(app, caplog, send)
        undo = _flask_only(app)
        try:
            view = _answer(app, caplog, send)
        finally:
            undo()
        # the view runs second: a new token is a duplicate there; compare what must match
        if fast["status"] == 200:
            assert view["status"] == 200
            fast["access"][0].pop("receipts"), view["access"][0].pop("receipts")
            fast["access"][0].pop("enqueued", None), view["access"][0].pop("enqueued", None)
            fast["counted"], view["counted"] = sum(fast["counted"].values()), sum(view["counted"].values())
        assert fast == view

    yield compare


BODIES: dict[str, tuple[bytes, str | None]] = {
    "json": (json.dumps({"ShopNo": SHOP, "PayToken": TOKEN}).encode(), JSON),
    "json without a content type": (json.dumps({"ShopNo": SHOP, "PayToken": TOKEN + "b"}).encode(), None),
    "json with a charset": (json.dumps({"ShopNo": SHOP, "PayToken": TOKEN + "c"}).encode(),
                            "Application/JSON; charset=utf-8"),
    "a form": (f"ShopNo={SHOP}&PayToken={TOKEN}d".encode(), "application/x-www-form-urlencoded"),
    "a BOM": (b"\xef\xbb\xbf" + json.dumps({"ShopNo": SHOP, "PayToken": TOKEN + "e"}).encode(), JSON),
    "not json": (b"{nope", JSON),
    "a list": (b"[1, 2]", JSON),
    "no PayToken": (json.dumps({"ShopNo": SHOP}).encode(), JSON),
    "a bad PayToken": (json.dumps({"ShopNo": SHOP, "PayToken": "a b"}).encode(), JSON),
    "an unknown shop": (json.dumps({"ShopNo": "NA9999_001", "PayToken": TOKEN}).encode(), JSON),
    "an empty body": (b"", JSON),
    "bad utf-8": (b'{"ShopNo": "\xff"}', JSON),
}


@pytest.mark.parametrize("case", list(BODIES))
def test_each_body_gets_the_views_answer(app: Flask, caplog: pytest.LogCaptureFixture, case: str) -> None:
    body, content_type = BODIES[case]
    with _both(app) as compare:
        compare(lambda: _post(app, body, content_type), caplog)


def test_a_refused_caller_gets_the_views_answer(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    deps = app.extensions["qpay"]
    bank = ip_networks({"X": "203.0.113.0/24"}, "X")
    deps.settings = dataclasses.replace(deps.settings, callback_allow=bank)
    with _both(app) as compare:
        compare(lambda: _post(app, BODIES["json"][0], remote="198.51.100.7"), caplog)


def test_a_database_that_is_down_gets_the_views_503(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    @contextmanager
    def down() -> Iterator[None]:
        raise OperationalError("INSERT", {}, Exception("connection refused"))
        yield  # pragma: no cover

    app.extensions["qpay"].unit_of_work = down
    with _both(app) as compare:
        compare(lambda: _post(app, BODIES["json"][0]), caplog)


def test_an_unexpected_failure_gets_the_views_500(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    @contextmanager
    def broken() -> Iterator[None]:
        raise RuntimeError("a bug")
        yield  # pragma: no cover

    app.extensions["qpay"].unit_of_work = broken
    with _both(app) as compare:
        compare(lambda: _post(app, BODIES["json"][0]), caplog)


def test_a_broker_that_is_down_gets_the_views_answer(
    app: Flask, enqueuer: FakeEnqueuer, caplog: pytest.LogCaptureFixture
) -> None:
    enqueuer.up = False
    with _both(app) as compare:
        body = json.dumps({"ShopNo": SHOP, "PayToken": "broker_down_1"}).encode()
        compare(lambda: _post(app, body), caplog)


def test_what_it_does_not_take_reaches_flask_unread(app: Flask) -> None:
    client = app.test_client()
    # a GET: Flask's 405 with its Allow header
    resp = client.get("/qpay/backend")
    assert resp.status_code == 405
    assert "POST" in resp.headers["Allow"]
    # a body over the cap: Flask's 413 (the middleware reads nothing of it)
    resp = client.post("/qpay/backend", data=b"x" * 5000, content_type=JSON)
    assert resp.status_code == 413
    assert resp.headers["Connection"] == "close"
    # a chunked body (no Content-Length, as gunicorn passes one): the view reads it
    body = json.dumps({"ShopNo": SHOP, "PayToken": "chunked_1"}).encode()
    resp = client.post("/qpay/backend", input_stream=io.BytesIO(body), content_type=JSON,
                       headers={"Transfer-Encoding": "chunked"},
                       environ_overrides={"wsgi.input_terminated": True})
    assert (resp.status_code, resp.get_data()) == (200, b'{"Status":"S"}')
