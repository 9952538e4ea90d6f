"""Liveness and readiness."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from tests.unit.webhook.helpers import refusing_database


def test_healthz_is_ok_without_touching_anything(app):
    app.extensions["qpay"].unit_of_work = refusing_database
    resp = app.test_client().get("/healthz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok"}


def test_readyz_is_ready_when_database_and_broker_answer(client):
    resp = client.get("/readyz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ready"}


def test_readyz_names_the_database_when_it_is_down(app):
    app.extensions["qpay"].unit_of_work = refusing_database
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json()["failed"] == ["database"]


def test_readyz_names_the_broker_when_it_is_down(client, enqueuer):
    enqueuer.up = False
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json() == {"status": "unavailable", "failed": ["broker"],
                               "reasons": {"broker": "ConnectionError"}}


def test_readyz_gives_up_on_a_hanging_database_within_its_deadline(app, monkeypatch):
    # given a database whose connect never returns
    release = threading.Event()

    @contextmanager
    def hanging() -> Iterator[Session]:
        release.wait(30)
        raise ConnectionError("gave up")
        yield  # pragma: no cover

    monkeypatch.setattr("webhook.health.PROBE_TIMEOUT", 0.3)
    app.extensions["qpay"].unit_of_work = hanging
    try:
        resp = app.test_client().get("/readyz")
    finally:
        release.set()
    assert resp.status_code == 503
    assert resp.get_json()["reasons"] == {"database": "timeout"}
