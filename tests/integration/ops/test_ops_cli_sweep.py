"""`flask --app webhook sweep run` and the broker: the webhook's Enqueuer is the sweep's Enqueue as it is.

send_resolve reports a broker outage as False (it never raises); the sweep must count that as a failed
enqueue, leave the token unmarked for the next pass, and the command must exit 1.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import redis
from flask.testing import FlaskCliRunner
from sqlalchemy import select

from core.db import transaction
from core.models import PayToken
from core.settings import Settings
from core.sweeplock import SWEEP_LOCK_KEY
from tests.integration.ops.conftest import FakeEnqueuer
from tests.support.fakes import FakeBankClient
from tests.support.services import TempRedis
from webhook import create_app

STALE_TOKEN = "5d0c9e8b7a6f4e3d2c1b0a9f8e7d6c5b"


def _stale_token(settings: Settings) -> int:
    """A stored PayToken never resolved (its enqueue was lost), older than the grace period."""
    at = datetime.now(UTC) - timedelta(minutes=10)
    with transaction(settings.database_url) as session:
        row = PayToken(shop_no=settings.shop_no, pay_token=STALE_TOKEN, source="backend",
                       first_received_at=at, last_received_at=at, state="received")
        session.add(row)
        session.flush()
        return row.id


def _last_enqueued(settings: Settings, token_id: int) -> datetime | None:
    with transaction(settings.database_url) as session:
        return session.scalar(select(PayToken.last_enqueued_at).where(PayToken.id == token_id))


def test_sweep_run_enqueues_a_stale_token_and_marks_it(
    cli: FlaskCliRunner, broker: FakeEnqueuer, settings: Settings
) -> None:
    # given a stale token and a broker that is up
    token_id = _stale_token(settings)

    # when the on-call engineer runs a sweep pass
    result = cli.invoke(args=["sweep", "run"])

    # then the token is sent once and marked, and the pass is clean
    assert result.exit_code == 0, result.output
    assert broker.sent == [token_id]
    assert "requeued=1" in result.output
    assert _last_enqueued(settings, token_id) is not None


def test_sweep_run_with_the_broker_down_counts_the_failed_enqueue_and_exits_1(
    cli: FlaskCliRunner, broker: FakeEnqueuer, settings: Settings
) -> None:
    # given a stale token and a broker that is down (send_resolve answers False, raises nothing)
    token_id = _stale_token(settings)
    broker.up = False

    # when the on-call engineer runs a sweep pass
    result = cli.invoke(args=["sweep", "run"])

    # then the pass reports the failed enqueue and exits 1, and the token stays due for the next pass
    assert result.exit_code == 1, result.output
    assert "requeued=0" in result.output
    assert "enqueue failed: broker unreachable" in result.output
    assert _last_enqueued(settings, token_id) is None
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_sweep_run_waits_its_turn_while_another_pass_holds_the_lease(
    settings: Settings, broker: FakeEnqueuer, redis_server: TempRedis
) -> None:
    # given a stale token, and a worker's sweep pass running (it holds the lease in the shared Redis)
    token_id = _stale_token(settings)
    shared = replace(settings, broker_url=redis_server.url)
    cli = create_app(shared, enqueuer=broker, client_factory=lambda *a, **k: FakeBankClient(),
                     configure_logs=False).test_cli_runner()
    lease = redis.Redis.from_url(redis_server.url)
    lease.set(SWEEP_LOCK_KEY, "worker-7:1234:abcd", ex=60)

    # when the on-call engineer runs a pass meanwhile
    refused = cli.invoke(args=["sweep", "run"])

    # then nothing runs beside the other pass: exit 1, a clear word, nothing sent, the lease untouched
    assert refused.exit_code == 1, refused.output
    assert "another sweep pass is running" in refused.output
    assert broker.sent == []
    assert lease.get(SWEEP_LOCK_KEY) == b"worker-7:1234:abcd"

    # and once that pass ended, the same command runs the pass, and gives the lease back after it
    lease.delete(SWEEP_LOCK_KEY)
    done = cli.invoke(args=["sweep", "run"])
    assert done.exit_code == 0, done.output
    assert broker.sent == [token_id]
    assert lease.get(SWEEP_LOCK_KEY) is None
    lease.close()
