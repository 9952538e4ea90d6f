"""Deploy defaults (issue 13, item 8): a guessable API token is refused, every process masks the API
token and Flower's logins, and SQL parameters stay out of database errors."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from core.db import make_engine
from core.logging import JsonFormatter, redact_records
from core.settings import SettingsError, load_settings
from core.variables import MIN_API_TOKEN_LENGTH
from tests.unit.webhook.helpers import make_settings
from webhook import create_app

REAL_BANK = "https://apisbx.sinopac.com/funBIZ-Sbx/QPay.WebAPI/api/"
KEYS = {"QPAY_SHOP_NO": "NA0002_001", "QPAY_KEY_ID": "kid-0123", "QPAY_HASH_A1": "1" * 16,
        "QPAY_HASH_A2": "2" * 16, "QPAY_HASH_B1": "3" * 16, "QPAY_HASH_B2": "4" * 16}
API_TOKEN = "deploy-token-4b8e61c0d2f9a7e35c1d"
FLOWER = "ops:flower-pw-93ac17,audit:second-pw-51be"


@pytest.mark.parametrize("length", [1, 16, MIN_API_TOKEN_LENGTH - 1])
def test_a_short_api_token_is_refused_against_a_real_bank(length: int) -> None:
    token = ("Zq7" * 20)[:length]
    with pytest.raises(SettingsError, match=r"^API_TOKEN must be at least 32 characters") as err:
        load_settings({**KEYS, "QPAY_API_BASE_URL": REAL_BANK, "API_TOKEN": token})
    assert token not in str(err.value)


def test_a_long_enough_api_token_is_accepted_against_a_real_bank() -> None:
    token = "t" * MIN_API_TOKEN_LENGTH
    settings = load_settings({**KEYS, "QPAY_API_BASE_URL": REAL_BANK, "API_TOKEN": token})
    assert settings.api_token is not None


@pytest.mark.parametrize("base", ["http://127.0.0.1:8100/QPay.WebAPI/api/", "http://localhost:8100/x/"])
def test_a_short_api_token_is_accepted_against_the_local_sandbox(base: str) -> None:
    assert load_settings({"QPAY_API_BASE_URL": base, "API_TOKEN": "short"}).api_token is not None


@pytest.fixture
def root_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)


def _leaked(stream: io.StringIO) -> str:
    return "\n".join(json.loads(line)["msg"] for line in stream.getvalue().splitlines())


def test_the_web_process_masks_the_api_token_and_flowers_logins_even_on_the_sandbox(
        tmp_path: Path, root_lines: io.StringIO) -> None:
    # given the web app on the sandbox's public keys (nothing of the shop's is secret there)
    settings = make_settings(f"sqlite:///{tmp_path / 'w.db'}", API_TOKEN=API_TOKEN, FLOWER_BASIC_AUTH=FLOWER)
    assert settings.sandbox_defaults
    create_app(settings, configure_logs=False)
    # when a line carries the token and the Flower passwords
    logging.getLogger("test.deploy").warning("token %s logins %s", API_TOKEN, FLOWER)
    # then none of them is written
    out = _leaked(root_lines)
    for needle in (API_TOKEN, "flower-pw-93ac17", "second-pw-51be"):
        assert needle not in out, out


def test_worker_and_beat_processes_mask_them_too(monkeypatch: pytest.MonkeyPatch,
                                                root_lines: io.StringIO) -> None:
    # given the settings a worker or beat process loads (setup_logging runs in both)
    import workers.signals

    settings = load_settings({**KEYS, "QPAY_API_BASE_URL": REAL_BANK, "API_TOKEN": API_TOKEN,
                              "FLOWER_BASIC_AUTH": FLOWER})
    monkeypatch.setattr(workers.signals, "get_settings", lambda: settings)
    monkeypatch.setattr(workers.signals, "configure_logging", lambda level: None)
    workers.signals._json_logs()
    logging.getLogger("test.deploy").warning("%s %s %s", API_TOKEN, FLOWER, KEYS["QPAY_KEY_ID"])
    out = _leaked(root_lines)
    for needle in (API_TOKEN, "flower-pw-93ac17", "second-pw-51be", KEYS["QPAY_KEY_ID"]):
        assert needle not in out, out


def test_records_are_redacted_where_the_formatter_is_not_ours() -> None:
    # given a process (Flower) whose handler formats with the stdlib formatter
    settings = load_settings({**KEYS, "QPAY_API_BASE_URL": REAL_BANK, "FLOWER_BASIC_AUTH": FLOWER})
    from core.logging import register_secrets

    register_secrets(*settings.log_secrets())
    previous = logging.getLogRecordFactory()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("test.tornado")
    logger.addHandler(handler)
    try:
        redact_records()
        logger.warning("basic auth %s", FLOWER)
    finally:
        logging.setLogRecordFactory(previous)
        logger.removeHandler(handler)
    assert "flower-pw-93ac17" not in stream.getvalue()
    assert "basic auth" in stream.getvalue()


def test_database_errors_do_not_carry_the_statements_parameters(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (v TEXT UNIQUE)"))
        conn.execute(text("INSERT INTO t VALUES ('secret-payload-77')"))
    with pytest.raises(IntegrityError) as err, engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": "secret-payload-77"})
    engine.dispose()
    assert "secret-payload-77" not in str(err.value)
    assert "INSERT INTO t" in str(err.value)
