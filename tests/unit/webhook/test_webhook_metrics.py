"""GET /metrics through the real app: the format, the bearer token, the callback counter, the figures."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from core.db import transaction
from core.models import Order, PayToken, SweepRun
from tests.unit.webhook.helpers import SHOP, TOKEN, FakeEnqueuer, make_settings, refusing_database
from webhook import create_app


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def callbacks(source: str, result: str) -> float:
    return REGISTRY.get_sample_value("qpay_callbacks_total", {"source": source, "result": result}) or 0.0


def post(client: FlaskClient, body: object, path: str = "/qpay/backend"):  # type: ignore[no-untyped-def]
    return client.post(path, data=json.dumps(body), content_type="application/json")


def test_metrics_answers_in_the_prometheus_text_format(client):
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.content_type.startswith("text/plain; version=0.0.4")
    names = {f.name for f in text_string_to_metric_families(resp.data.decode())}
    assert {"qpay_callbacks", "qpay_bank_requests", "qpay_bank_request_duration_seconds",
            "qpay_settlement_seconds", "qpay_orders", "qpay_tokens",
            "qpay_oldest_unresolved_token_age_seconds", "qpay_sweep_interval_seconds"} <= names


def test_metrics_needs_the_bearer_token_when_one_is_set(db_url):
    app = create_app(make_settings(db_url, METRICS_TOKEN="scrape-secret-91"), enqueuer=FakeEnqueuer(),
                     configure_logs=False)
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = client.get("/metrics", headers={"Authorization": "Bearer scrape-secret-91"})
    assert ok.status_code == 200
    assert b"qpay_callbacks_total" in ok.data
    assert b"scrape-secret-91" not in ok.data


def test_each_callback_result_is_counted(app: Flask, client: FlaskClient):
    before = {r: callbacks("backend", r) for r in ("stored", "duplicate", "invalid", "db_unavailable")}
    assert post(client, {"ShopNo": SHOP, "PayToken": TOKEN}).status_code == 200
    assert post(client, {"ShopNo": SHOP, "PayToken": TOKEN}).status_code == 200
    assert post(client, {"ShopNo": SHOP, "PayToken": "bad token!"}).status_code == 400
    app.extensions["qpay"].unit_of_work = refusing_database
    assert post(client, {"ShopNo": SHOP, "PayToken": "b" * 20}).status_code == 503
    after = {r: callbacks("backend", r) for r in before}
    assert {r: after[r] - before[r] for r in before} == {
        "stored": 1, "duplicate": 1, "invalid": 1, "db_unavailable": 1}


def test_return_callbacks_are_counted_under_their_source(client):
    before = callbacks("return", "stored")
    post(client, {"ShopNo": SHOP, "PayToken": "r" * 30}, path="/qpay/return")
    assert callbacks("return", "stored") == before + 1


def test_figures_count_the_pending_work_only(client, db_url):
    now = datetime.now(UTC)
    with transaction(db_url) as session:
        for i, status in enumerate(["pending", "pending", "needs_review", "paid", "paid", "expired"]):
            session.add(Order(shop_no=SHOP, order_no=f"O{i}", amount=100, pay_type="A", product_name="x",
                              status=status))
        for i, state in enumerate(["received", "untrusted", "resolved", "resolved", "dead"]):
            session.add(PayToken(shop_no=SHOP, pay_token=f"T{i}", source="backend", state=state,
                                 first_received_at=now - timedelta(minutes=10 * (i + 1)),
                                 last_received_at=now))
        session.add(SweepRun(started_at=now, finished_at=now - timedelta(seconds=30), errors=0))
        session.add(SweepRun(started_at=now, finished_at=now, errors=2))
    got = samples(client.get("/metrics").data)
    assert got[("qpay_orders", (("status", "pending"),))] == 2
    assert got[("qpay_orders", (("status", "needs_review"),))] == 1
    assert ("qpay_orders", (("status", "paid"),)) not in got
    assert got[("qpay_tokens", (("state", "received"),))] == 1
    assert got[("qpay_tokens", (("state", "untrusted"),))] == 1
    assert got[("qpay_tokens", (("state", "dead"),))] == 1
    # the dead token (first received 50 minutes ago) is the oldest unresolved one
    assert 2999 <= got[("qpay_oldest_unresolved_token_age_seconds", ())] <= 3060
    last = got[("qpay_sweep_last_success_timestamp_seconds", ())]
    assert abs(last - (now - timedelta(seconds=30)).timestamp()) < 1


def test_a_database_down_leaves_the_figures_out_and_counts_the_error(app, client):
    before = REGISTRY.get_sample_value("qpay_scrape_errors_total", {"source": "database"}) or 0.0
    app.extensions["qpay"].unit_of_work = refusing_database
    resp = client.get("/metrics")
    assert resp.status_code == 200
    got = samples(resp.data)
    assert not any(name == "qpay_orders" for name, _ in got)
    assert REGISTRY.get_sample_value("qpay_scrape_errors_total", {"source": "database"}) == before + 1


def test_an_unreachable_broker_leaves_the_queue_depths_out(client):
    # REDIS_URL of the test settings points at a closed port
    before = REGISTRY.get_sample_value("qpay_scrape_errors_total", {"source": "broker"}) or 0.0
    got = samples(client.get("/metrics").data)
    assert not any(name == "qpay_queue_messages" for name, _ in got)
    assert REGISTRY.get_sample_value("qpay_scrape_errors_total", {"source": "broker"}) == before + 1


def test_a_bank_call_of_the_orders_api_moves_the_bank_metrics(client, bank):
    def value(name: str, labels: dict[str, str]) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    ok = {"service": "OrderCreate", "outcome": "ok", "shop": "none", "key_set": "none"}  # the fake's record
    before = (value("qpay_bank_requests_total", ok),
              value("qpay_bank_request_duration_seconds_count", {"service": "OrderCreate"}))
    resp = client.post("/api/orders", json={"amount": 500, "pay_type": "A", "product_name": "tea"},
                       headers={"Authorization": "Bearer test-api-token-7f3a"})
    assert resp.status_code == 201, resp.data
    assert value("qpay_bank_requests_total", ok) == before[0] + 1
    assert value("qpay_bank_request_duration_seconds_count", {"service": "OrderCreate"}) == before[1] + 1
