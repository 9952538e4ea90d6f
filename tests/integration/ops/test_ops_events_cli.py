"""`flask --app webhook events ...` and the notifications in `orders show`: real app, SQLite, fake broker."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook

from core.db import transaction
from core.models import DeliveryAttempt, Order, ShopEvent
from core.settings import Settings, load_settings
from core.webhook_signing import new_secret
from tests.integration.ops.conftest import FakeEnqueuer
from tests.support.fakes import FakeBankClient
from webhook import create_app

SECRET = new_secret()


@pytest.fixture
def pushing(db_url: str, bank: FakeBankClient, broker: FakeEnqueuer) -> Iterator[FlaskCliRunner]:
    """The CLI of an app with SHOP_WEBHOOK_URL set."""
    settings = load_settings({"DATABASE_URL": db_url, "REDIS_URL": "redis://127.0.0.1:1/0",
                              "SHOP_WEBHOOK_URL": "http://127.0.0.1:9/hook", "SHOP_WEBHOOK_SECRET": SECRET})
    app: Flask = create_app(settings, enqueuer=broker, client_factory=lambda _o: bank, configure_logs=False)
    yield app.test_cli_runner()
    from core.services.events import set_publisher

    set_publisher(None)


def _events(settings: Settings, order_no: str) -> list[ShopEvent]:
    with transaction(settings.database_url) as s:
        return list(s.scalars(select(ShopEvent).where(ShopEvent.order_no == order_no).order_by(ShopEvent.id)))


def _fail_event(settings: Settings, event_id: int) -> None:
    with transaction(settings.database_url) as s:
        s.execute(update(ShopEvent).where(ShopEvent.id == event_id)
                  .values(state="failed", attempts=3, last_error="attempt 3: HTTP 503"))
        for n in (1, 2, 3):
            s.add(DeliveryAttempt(event_id=event_id, attempt=n, at=datetime.now(UTC), duration_ms=12,
                                  http_status=503))


def test_new_secret_prints_a_secret_the_standardwebhooks_package_accepts(cli: FlaskCliRunner) -> None:
    result = cli.invoke(args=["events", "new-secret"])
    assert result.exit_code == 0
    secret = result.output.strip()
    assert secret.startswith("whsec_")
    Webhook(secret)  # raises on a malformed secret
    assert cli.invoke(args=["events", "new-secret"]).output.strip() != secret


def test_list_and_show_an_orders_events_with_every_attempt(
    pushing: FlaskCliRunner, settings: Settings, new_order: Callable[..., Order]
) -> None:
    new_order("EVL01")
    new_order("EVL02")
    [event] = _events(settings, "EVL01")
    _fail_event(settings, event.id)

    listed = pushing.invoke(args=["events", "list", "--order", "EVL01"])
    assert listed.exit_code == 0, listed.output
    assert f"evt_{event.id}" in listed.output
    assert "order.pending" in listed.output
    assert "EVL02" not in listed.output
    failed = pushing.invoke(args=["events", "list", "--failed"])
    assert "FAILED after 3 attempts" in failed.output
    assert "EVL02" not in failed.output

    shown = pushing.invoke(args=["events", "show", f"evt_{event.id}"])
    assert shown.exit_code == 0, shown.output
    body = json.loads(shown.output[shown.output.index("{"):shown.output.index("\nattempts:")])
    assert body == json.loads(event.body)
    assert shown.output.count(" ms  HTTP 503") == 3
    assert pushing.invoke(args=["events", "show", "evt_999999"]).exit_code == 1
    assert pushing.invoke(args=["events", "show", "nonsense"]).exit_code == 2


def test_redeliver_one_failed_and_since(
    pushing: FlaskCliRunner, settings: Settings, broker: FakeEnqueuer, new_order: Callable[..., Order]
) -> None:
    new_order("EVR01")
    [event] = _events(settings, "EVR01")
    assert broker.events == [event.id]  # the creation's own delivery, sent after its commit
    broker.events.clear()
    _fail_event(settings, event.id)

    assert pushing.invoke(args=["events", "redeliver", "--failed"]).exit_code == 0
    assert broker.events == [event.id]
    [again] = _events(settings, "EVR01")
    assert again.state == "pending"
    assert again.body == event.body

    assert pushing.invoke(args=["events", "redeliver", f"evt_{event.id}"]).exit_code == 0
    assert pushing.invoke(args=["events", "redeliver", "--since", "1h"]).exit_code == 0
    assert broker.events == [event.id] * 3
    assert pushing.invoke(args=["events", "redeliver", "--since", "yesterday-ish"]).exit_code == 2
    assert pushing.invoke(args=["events", "redeliver"]).exit_code == 2
    assert pushing.invoke(args=["events", "redeliver", "evt_1", "--failed"]).exit_code == 2

    broker.up = False
    result = pushing.invoke(args=["events", "redeliver", f"evt_{event.id}"])
    assert result.exit_code == 1
    assert "sweep relays" in result.output


def test_redeliver_without_a_webhook_url_says_so(
    cli: FlaskCliRunner, new_order: Callable[..., Order]
) -> None:
    new_order("EVN01")
    result = cli.invoke(args=["events", "redeliver", "--failed"])
    assert result.exit_code == 1
    assert "SHOP_WEBHOOK_URL is not set" in result.output


def test_orders_show_lists_the_orders_events_with_their_delivery_state(
    pushing: FlaskCliRunner, settings: Settings, new_order: Callable[..., Order]
) -> None:
    new_order("EVS01")
    [event] = _events(settings, "EVS01")
    with transaction(settings.database_url) as s:
        s.execute(update(ShopEvent).where(ShopEvent.id == event.id)
                  .values(state="delivered", attempts=2, delivered_at=datetime.now(UTC)))
    result = pushing.invoke(args=["orders", "show", "EVS01"])
    assert result.exit_code == 0, result.output
    assert "shop notifications" in result.output
    assert f"evt_{event.id}" in result.output
    assert "delivered" in result.output
    assert "(attempts 2)" in result.output
