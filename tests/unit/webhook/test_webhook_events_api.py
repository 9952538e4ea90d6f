"""The pull feed over HTTP: bearer auth, limits, cursors, and the stored bodies byte for byte."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from core.db import transaction
from core.models import Order, ShopEvent
from core.services.events import record_event
from tests.unit.webhook.helpers import auth

EVENTS = "/api/events"
ATM = {"amount": 500, "pay_type": "A", "product_name": "Oolong tea"}


def create(client, db_url, n: int) -> None:
    """One order through the API (order.pending), then n - 1 more events of it."""
    resp = client.post("/api/orders", json={**ATM, "order_no": "EV-0"}, headers=auth())
    assert resp.status_code == 201
    with transaction(db_url) as s:
        order = s.scalars(select(Order)).one()
        for i in range(1, n):
            record_event(s, order, "pending", f"step{i}", "operator", datetime.now(UTC))


def test_the_feed_needs_the_bearer_token(client):
    assert client.get(EVENTS).status_code == 401
    assert client.get(EVENTS, headers=auth("wrong")).status_code == 401


def test_an_empty_feed_answers_no_events_and_a_cursor(client):
    resp = client.get(EVENTS, headers=auth())
    assert resp.status_code == 200
    assert resp.get_json() == {"events": [], "next": "0.0"}


def test_following_next_reads_every_event_once_oldest_first(client, db_url):
    create(client, db_url, 5)
    seen, cursor = [], ""
    for _ in range(10):
        body = client.get(f"{EVENTS}?after={cursor}&limit=2", headers=auth()).get_json()
        seen += body["events"]
        if not body["events"]:
            assert body["next"] == cursor
            break
        cursor = body["next"]
    assert [e["type"] for e in seen] == ["order.pending"] + [f"order.step{i}" for i in range(1, 5)]
    with transaction(db_url) as s:
        stored = [json.loads(b) for b in s.scalars(select(ShopEvent.body).order_by(ShopEvent.id))]
    assert seen == stored


def test_the_default_limit_is_100(client, db_url):
    create(client, db_url, 102)
    assert len(client.get(EVENTS, headers=auth()).get_json()["events"]) == 100


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "limit=x", "limit=-1", "after=zzz", "after=1"])
def test_bad_parameters_are_a_400_naming_the_field(client, query):
    resp = client.get(f"{EVENTS}?{query}", headers=auth())
    assert resp.status_code == 400
    assert resp.get_json()["field"] == query.split("=")[0]
