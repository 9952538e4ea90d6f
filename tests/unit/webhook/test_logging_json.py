"""core.logging: one JSON object per line, context fields, PayTokens shortened, secrets masked."""

from __future__ import annotations

import io
import json
import logging

import pytest

from core.logging import JsonFormatter, configure_logging, log_context, register_secrets


@pytest.fixture
def lines() -> io.StringIO:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.jsonlog")
    logger.handlers = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return stream


def records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_record_is_one_json_line_with_context(lines):
    log = logging.getLogger("test.jsonlog")
    with log_context(request_id="r-1", order_no="A-1", pay_token="0123456789abcdef" * 4):
        log.info("two\nlines %s", "here", extra={"token_id": 7})
    (record,) = records(lines)
    assert record["msg"] == "two\nlines here"
    assert record["request_id"] == "r-1"
    assert record["order_no"] == "A-1"
    assert record["pay_token"] == "01234567…"
    assert record["token_id"] == 7
    assert record["level"] == "INFO"
    assert lines.getvalue().count("\n") == 1


def test_context_is_gone_after_the_block(lines):
    with log_context(task_id="t-9"):
        pass
    logging.getLogger("test.jsonlog").info("after")
    assert "task_id" not in records(lines)[0]


def test_pay_token_in_extra_is_shortened(lines):
    logging.getLogger("test.jsonlog").info("x", extra={"pay_token": "f" * 64})
    assert records(lines)[0]["pay_token"] == "ffffffff…"


def test_secret_named_fields_are_masked(lines):
    logging.getLogger("test.jsonlog").info("x", extra={"hash_key": "0A2A9C1D5E7B4086", "key_id": "k",
                                                         "api_token": "t", "password": "p"})
    record = records(lines)[0]
    assert [record[k] for k in ("hash_key", "key_id", "api_token", "password")] == ["***"] * 4


def test_url_passwords_bearer_tokens_and_registered_values_are_cut_from_text(lines):
    register_secrets("9E8D7C6B5A493827")
    log = logging.getLogger("test.jsonlog")
    log.info("db postgresql://qpay:hunter2@db:5432/qpay auth Bearer abc.def key 9e8d7c6b5a493827")
    msg = records(lines)[0]["msg"]
    assert "hunter2" not in msg
    assert "abc.def" not in msg
    assert "9e8d7c6b5a493827" not in msg.lower()
    assert "postgresql://qpay:***@db:5432/qpay" in msg


def test_secrets_in_tracebacks_are_masked(lines):
    register_secrets("0BB2C3D4E5F60718")
    try:
        raise ValueError("bad key 0BB2C3D4E5F60718")
    except ValueError:
        logging.getLogger("test.jsonlog").exception("failed")
    record = records(lines)[0]
    assert "0BB2C3D4E5F60718" not in record["exc"]
    assert "ValueError" in record["exc"]


def test_configure_logging_is_idempotent():
    stream = io.StringIO()
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    try:
        configure_logging("INFO", stream)
        configure_logging("INFO", stream)
        logging.getLogger("test.once").warning("hello")
        assert stream.getvalue().count("hello") == 1
    finally:
        root.handlers = before
        root.setLevel(level)


def test_configured_records_skip_the_caller_thread_and_process_lookups():
    # Given logging as every process configures it
    stream = io.StringIO()
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    kept: list[logging.LogRecord] = []

    def keep(record: logging.LogRecord) -> bool:
        kept.append(record)
        return True

    logger = logging.getLogger("test.caller")
    try:
        configure_logging("INFO", stream)
        logger.addFilter(keep)

        # When a line is logged
        logger.warning("from %s", "here", extra={"order_no": "A1"})

        # Then the record was made without walking the stack or naming the thread and process (the
        # JSON line carries none of them), and the line is whole
        [record] = kept
        assert (record.funcName, record.lineno) == ("(unknown function)", 0)
        assert (record.threadName, record.processName) == (None, None)
        [line] = records(stream)
        assert (line["msg"], line["order_no"], line["level"]) == ("from here", "A1", "WARNING")
    finally:
        logger.removeFilter(keep)
        root.handlers = before
        root.setLevel(level)


def test_web_request_logs_carry_request_id_and_no_full_token(app, caplog):
    token = "c" * 64
    with caplog.at_level(logging.INFO):
        app.test_client().post("/qpay/backend", json={"ShopNo": "NA0001_001", "PayToken": token},
                               headers={"X-Request-ID": "req-42"})
        app.test_client().get(f"/qpay/tokens/{token}/status")
    formatted = [JsonFormatter().format(r) for r in caplog.records]
    assert all(token not in line for line in formatted)
    access = [json.loads(line) for line in formatted if '"msg": "request"' in line]
    assert access[0]["request_id"] == "req-42"
    assert access[0]["route"] == "/qpay/backend"
    assert access[1]["route"] == "/qpay/tokens/<pay_token>/status"
    # one line per callback: the access line carries what was recorded
    assert not [line for line in formatted if "pay token recorded" in line]
    assert access[0]["pay_token"] == "cccccccc…"
    assert (access[0]["receipts"], access[0]["state"], access[0]["source"]) == (1, "received", "backend")
    assert isinstance(access[0]["token_id"], int)
    assert access[0]["enqueued"] is True
