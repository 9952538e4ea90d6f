"""Pushing order events: signed so that the independent `standardwebhooks` package accepts them, one
attempt at a time, every attempt recorded, retried with backoff, given up after SHOP_WEBHOOK_MAX_AGE."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from standardwebhooks.webhooks import Webhook

from core.models import DeliveryAttempt, Order, ShopEvent
from core.services import notify
from core.services.events import record_event
from core.settings import Settings, SettingsError, load_settings
from core.webhook_signing import new_secret, secret_key, signed_headers
from scripts.shop import ShopEndpoint
from tests.unit.workers.conftest import NOW, add_order
from workers.notify import deliver, post_event

SECRET = new_secret()
UoW = Callable[[], AbstractContextManager[Session]]


@pytest.fixture
def shop() -> Iterator[ShopEndpoint]:
    with ShopEndpoint(SECRET) as endpoint:
        yield endpoint


def settings_for(db_url: str, url: str, **env: str) -> Settings:
    return load_settings({"DATABASE_URL": db_url, "SHOP_WEBHOOK_URL": url, "SHOP_WEBHOOK_SECRET": SECRET,
                          **env})


def add_event(uow: UoW, order_no: str = "N1", created: datetime | None = None) -> int:
    add_order(uow, order_no)
    with uow() as s:
        order = s.scalars(select(Order).where(Order.order_no == order_no)).one()
        return record_event(s, order, "pending", "paid", "backend", created or datetime.now(UTC)).id


def event_row(uow: UoW, event_id: int) -> ShopEvent:
    with uow() as s:
        return s.scalars(select(ShopEvent).where(ShopEvent.id == event_id)).one()


def attempts(uow: UoW, event_id: int) -> list[DeliveryAttempt]:
    with uow() as s:
        return list(s.scalars(select(DeliveryAttempt).where(DeliveryAttempt.event_id == event_id)
                              .order_by(DeliveryAttempt.attempt)))


# -- signing ----------------------------------------------------------------------------------------


def test_our_headers_verify_with_the_standardwebhooks_package() -> None:
    body = b'{"id":"evt_1","type":"order.paid"}'
    now = int(datetime.now(UTC).timestamp())
    headers = signed_headers(secret_key(SECRET), "evt_1", now, body)
    assert Webhook(SECRET).verify(body, headers) == {"id": "evt_1", "type": "order.paid"}
    assert headers["Content-Type"] == "application/json"
    assert headers["webhook-signature"].startswith("v1,")
    with pytest.raises(Exception, match="signature"):
        Webhook(new_secret()).verify(body, headers)


def test_new_secrets_are_whsec_base64_and_differ() -> None:
    a, b = new_secret(), new_secret()
    assert a.startswith("whsec_")
    assert a != b
    assert load_settings({"SHOP_WEBHOOK_URL": "https://shop.example/h", "SHOP_WEBHOOK_SECRET": a})


# -- settings -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "names"), [
    ({"SHOP_WEBHOOK_URL": "https://shop.example/h"}, "SHOP_WEBHOOK_SECRET is required"),
    ({"SHOP_WEBHOOK_URL": "ftp://shop.example/h", "SHOP_WEBHOOK_SECRET": SECRET}, "SHOP_WEBHOOK_URL"),
    ({"SHOP_WEBHOOK_URL": "https://x/h", "SHOP_WEBHOOK_SECRET": "abc"}, "SHOP_WEBHOOK_SECRET must start"),
    ({"SHOP_WEBHOOK_URL": "https://x/h", "SHOP_WEBHOOK_SECRET": "whsec_!!!"}, "SHOP_WEBHOOK_SECRET is not"),
    ({"SHOP_WEBHOOK_URL": "https://x/h", "SHOP_WEBHOOK_SECRET": "whsec_YWJj"},
     "SHOP_WEBHOOK_SECRET must hold"),
    ({"SHOP_WEBHOOK_RETRY_BASE": "soon"}, "SHOP_WEBHOOK_RETRY_BASE"),
    ({"SHOP_WEBHOOK_RETRY_BASE": "10", "SHOP_WEBHOOK_RETRY_CAP": "5"}, "SHOP_WEBHOOK_RETRY_CAP"),
    ({"SHOP_WEBHOOK_MAX_AGE": "0"}, "SHOP_WEBHOOK_MAX_AGE"),
])
def test_bad_webhook_settings_name_the_variable_never_the_value(env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names) as info:
        load_settings(env)
    assert "whsec_YWJj" not in str(info.value)
    assert SECRET not in str(info.value)


def test_webhook_defaults() -> None:
    s = load_settings({})
    assert (s.shop_webhook_url, s.webhook_retry_base, s.webhook_retry_cap, s.webhook_max_age) == (
        None, 5.0, 3600.0, 3 * 86400.0)
    assert SECRET not in repr(settings_for("sqlite://", "https://x/h"))


# -- one attempt ----------------------------------------------------------------------------------------


def test_a_delivery_is_signed_recorded_and_marked_delivered(
    uow: UoW, db_url: str, shop: ShopEndpoint
) -> None:
    event_id = add_event(uow)
    settled = deliver(event_id, settings_for(db_url, shop.url), uow)
    assert settled is not None
    assert settled.verdict == "delivered"
    [got] = shop.received()
    assert got.verified
    assert got.webhook_id == f"evt_{event_id}"
    assert json.loads(got.body) == json.loads(event_row(uow, event_id).body)
    assert got.body == event_row(uow, event_id).body.encode()
    row = event_row(uow, event_id)
    assert (row.state, row.attempts, row.next_attempt_at) == ("delivered", 1, None)
    [attempt] = attempts(uow, event_id)
    assert (attempt.attempt, attempt.http_status, attempt.error) == (1, 200, None)
    # a second message for the same event (redelivery, the relay) sends nothing more
    assert deliver(event_id, settings_for(db_url, shop.url), uow) is None
    assert len(shop.received()) == 1


def test_a_refused_delivery_is_retried_later_with_the_same_id_and_body(
    uow: UoW, db_url: str, shop: ShopEndpoint
) -> None:
    event_id = add_event(uow)
    settings = settings_for(db_url, shop.url, SHOP_WEBHOOK_RETRY_BASE="0.01", SHOP_WEBHOOK_RETRY_CAP="0.02")
    shop.mode = "503"
    first = deliver(event_id, settings, uow)
    assert first is not None
    assert first.verdict == "retry"
    assert 0 < (first.countdown or 0) <= 0.02
    row = event_row(uow, event_id)
    assert row.state == "pending"
    assert row.last_error == "attempt 1: HTTP 503"
    shop.mode = "ok"
    second = deliver(event_id, settings, uow)
    assert second is not None
    assert second.verdict == "delivered"
    a, b = shop.received()
    assert (a.webhook_id, a.body) == (b.webhook_id, b.body)
    assert [(x.attempt, x.http_status) for x in attempts(uow, event_id)] == [(1, 503), (2, 200)]


def test_a_connection_refused_is_an_attempt_with_its_error(uow: UoW, db_url: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    event_id = add_event(uow)
    settled = deliver(event_id, settings_for(db_url, f"http://127.0.0.1:{port}/h"), uow)
    assert settled is not None
    assert settled.verdict == "retry"
    [attempt] = attempts(uow, event_id)
    assert attempt.http_status is None
    assert attempt.error is not None
    assert attempt.error.startswith("connection failed:")
    assert "Connection refused" in attempt.error


def test_the_event_is_failed_with_one_alert_once_the_next_try_would_pass_max_age(
    uow: UoW, db_url: str, shop: ShopEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    event_id = add_event(uow, created=datetime.now(UTC) - timedelta(seconds=100))
    shop.mode = "503"
    settings = settings_for(db_url, shop.url, SHOP_WEBHOOK_MAX_AGE="100")
    with caplog.at_level(logging.ERROR):
        settled = deliver(event_id, settings, uow)
    assert settled is not None
    assert settled.verdict == "failed"
    assert event_row(uow, event_id).state == "failed"
    alerts = [r for r in caplog.records if r.getMessage().startswith("ALERT")]
    assert len(alerts) == 1
    assert f"evt_{event_id}" in alerts[0].getMessage()
    assert deliver(event_id, settings, uow) is None  # failed stays failed until an operator redelivers


def test_a_claimed_event_is_not_sent_twice_at_once(uow: UoW) -> None:
    event_id = add_event(uow)
    now = datetime.now(UTC)
    with uow() as s:
        assert notify.claim(s, event_id, now=now) is not None
    with uow() as s:
        assert notify.claim(s, event_id, now=now + timedelta(seconds=5)) is None  # held by the first
    with uow() as s:
        claimed = notify.claim(s, event_id, now=now + notify.CLAIM_LEASE)  # the first one died
    assert claimed is not None
    assert claimed.attempt == 2


def test_backoff_grows_to_the_cap_with_jitter(uow: UoW, db_url: str) -> None:
    settings = load_settings({"SHOP_WEBHOOK_RETRY_BASE": "5", "SHOP_WEBHOOK_RETRY_CAP": "3600"})
    event_id = add_event(uow)
    fail = notify.AttemptResult(503, None, 3)
    waits = []
    for attempt in range(1, 13):
        claimed = notify.Claimed(event_id, attempt, "{}", NOW, "N1")
        with uow() as s:
            waits.append(notify.settle(s, settings, claimed, fail, started=NOW, now=NOW,
                                       rand=lambda _lo, hi: hi).countdown)
    assert waits[:4] == [5, 10, 20, 40]
    assert waits[-1] == 3600


# -- the HTTP side --------------------------------------------------------------------------------------


class _Answer(BaseHTTPRequestHandler):
    status = 302
    size = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(self.status)
        self.send_header("Location", "http://127.0.0.1:9/elsewhere")
        self.send_header("Content-Length", str(self.size))
        self.end_headers()
        self.wfile.write(b"x" * self.size)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def answering() -> Iterator[Callable[[int, int], str]]:
    servers: list[HTTPServer] = []

    def serve(status: int, size: int) -> str:
        handler = type("H", (_Answer,), {"status": status, "size": size})
        server = HTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/h"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_redirect_is_not_followed_and_counts_as_not_delivered(answering: Callable[[int, int], str]) -> None:
    result = post_event(answering(302, 0), b"{}", {"Content-Type": "application/json"})
    assert result.http_status == 302
    assert not result.delivered


def test_a_huge_answer_is_cut_at_64_kib(answering: Callable[[int, int], str]) -> None:
    result = post_event(answering(200, 5 * 1024 * 1024), b"{}", {})
    assert result.delivered
    assert result.duration_ms < 5000


def test_a_hanging_endpoint_times_out(shop: ShopEndpoint) -> None:
    shop.hang()
    result = post_event(shop.url, b"{}", {}, timeout=0.5)
    shop.release()
    assert result.http_status is None
    assert result.error == "timeout after 0.5s"
    assert 400 <= result.duration_ms < 3000


# -- the task: at most half the slots deliver at once ----------------------------------------------


def test_a_delivery_that_finds_every_delivery_slot_busy_goes_back_to_the_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from workers import notify as task_module

    resent: list[tuple[int, float | None]] = []
    monkeypatch.setattr(task_module, "send_delivery", lambda i, countdown=None: resent.append((i, countdown)))
    monkeypatch.setattr(task_module, "deliver", lambda *_a, **_k: pytest.fail("must not deliver"))
    task_module.delivery_slots(4)  # two delivery slots
    assert task_module._slots.acquire(blocking=False)
    assert task_module._slots.acquire(blocking=False)
    try:
        assert task_module.deliver_event.run(7) == "busy"
    finally:
        task_module._slots.release()
        task_module._slots.release()
    [(event_id, countdown)] = resent
    assert event_id == 7
    assert countdown is not None
    assert task_module.BUSY_COUNTDOWN[0] <= countdown <= task_module.BUSY_COUNTDOWN[1]


@pytest.mark.parametrize("concurrency", [1, 2, 3, 16])
def test_delivery_slots_are_half_the_concurrency_and_at_least_one(concurrency: int) -> None:
    from workers import notify as task_module

    task_module.delivery_slots(concurrency)
    taken = 0
    while task_module._slots.acquire(blocking=False):
        taken += 1
    for _ in range(taken):
        task_module._slots.release()
    assert taken == max(1, concurrency // 2)


@pytest.mark.parametrize("bad", [0, -1, True, "7", None])
def test_the_task_refuses_anything_but_an_event_id(bad: object) -> None:
    from workers import notify as task_module

    assert task_module.deliver_event.run(bad) == "bad_argument"


@pytest.mark.parametrize(("countdown", "sent"), [(4.0, True), (300.0, True), (301.0, False)])
def test_a_short_retry_is_a_broker_countdown_and_a_long_one_is_the_sweeps(
    monkeypatch: pytest.MonkeyPatch, countdown: float, sent: bool
) -> None:
    from workers import notify as task_module

    resent: list[float | None] = []
    monkeypatch.setattr(task_module, "send_delivery", lambda _i, countdown=None: resent.append(countdown))
    monkeypatch.setattr(task_module, "deliver", lambda *_a, **_k: notify.Settled("retry", countdown))
    task_module.delivery_slots(2)
    assert task_module.deliver_event.run(9) == "retry"
    assert resent == ([countdown] if sent else [])


# -- the sweep's relay ----------------------------------------------------------------------------------


def test_the_sweep_relays_undelivered_events_with_no_live_delivery(uow: UoW, db_url: str) -> None:
    from core.services.sweep import run_sweep
    from tests.unit.workers.conftest import FakeBank

    settings = settings_for(db_url, "http://127.0.0.1:9/h", SWEEP_GRACE="60")
    old = add_event(uow, "R1", created=NOW - timedelta(minutes=10))  # the broker was down: never sent
    fresh = add_event(uow, "R2", created=NOW - timedelta(seconds=10))  # within the grace
    held = add_event(uow, "R3", created=NOW - timedelta(minutes=10))
    done = add_event(uow, "R4", created=NOW - timedelta(minutes=10))
    with uow() as s:
        assert notify.claim(s, held, now=NOW) is not None  # a live delivery holds it
        s.execute(update(ShopEvent).where(ShopEvent.id == done).values(state="delivered"))
    relayed: list[int] = []
    counts = run_sweep(uow, FakeBank(), settings, lambda _t: True, now=NOW,
                       relay=lambda i: relayed.append(i) is None)
    assert relayed == [old]
    assert counts.events_relayed == 1
    assert event_row(uow, old).last_enqueued_at == NOW
    assert fresh not in relayed
    # the next pass within the grace does not send it again; after the grace it does
    again: list[int] = []
    run_sweep(uow, FakeBank(), settings, lambda _t: True, now=NOW + timedelta(seconds=30),
              relay=lambda i: again.append(i) is None)
    assert again == []
    later: list[int] = []
    run_sweep(uow, FakeBank(), settings, lambda _t: True, now=NOW + timedelta(minutes=2),
              relay=lambda i: later.append(i) is None)
    assert sorted(later) == sorted([old, fresh, held])  # the claim on `held` ran out too


def test_a_relay_the_broker_refuses_counts_an_error_and_stays_due(uow: UoW, db_url: str) -> None:
    from core.services.sweep import run_sweep
    from tests.unit.workers.conftest import FakeBank

    settings = settings_for(db_url, "http://127.0.0.1:9/h", SWEEP_GRACE="60")
    event_id = add_event(uow, "R5", created=NOW - timedelta(minutes=10))
    counts = run_sweep(uow, FakeBank(), settings, lambda _t: True, now=NOW, relay=lambda _i: False)
    assert counts.events_relayed == 0
    assert counts.errors == 1
    assert event_row(uow, event_id).last_enqueued_at is None


def test_each_attempt_is_counted_in_the_deliveries_metric(uow: UoW, db_url: str, shop: ShopEndpoint) -> None:
    from prometheus_client import REGISTRY

    def count(result: str) -> float:
        return REGISTRY.get_sample_value("qpay_event_deliveries_total", {"result": result}) or 0.0

    before = (count("delivered"), count("failed"))
    event_id = add_event(uow)
    settings = settings_for(db_url, shop.url, SHOP_WEBHOOK_RETRY_BASE="0.01", SHOP_WEBHOOK_RETRY_CAP="0.02")
    shop.mode = "503"
    deliver(event_id, settings, uow)
    shop.mode = "ok"
    deliver(event_id, settings, uow)
    assert (count("delivered"), count("failed")) == (before[0] + 1, before[1] + 1)
