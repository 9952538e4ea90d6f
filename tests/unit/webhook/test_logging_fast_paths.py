"""core.logging's shortcuts write exactly what the full redaction and encoding would."""

from __future__ import annotations

import json
import logging
import re

from core import logging as jsonlog
from core.logging import MASK, JsonFormatter, redact_text, register_secrets


def redacted_the_long_way(text: str) -> str:
    """The three substitutions redact_text makes, each run unconditionally."""
    text = jsonlog._URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = jsonlog._BEARER.sub(lambda m: m.group(1) + MASK, text)
    pattern = jsonlog._secret_pattern
    return pattern.sub(MASK, text) if pattern is not None else text


TEXTS = [
    "request", "POST", "/qpay/backend", "received", "", "://", "a://b", "bearer", "Bearer\tabc.def",
    "BEARER xyz, next", "token bearer", "redis://:pw@host:6379/0", "postgresql://u:hunter2@db/q",
    "https://example.com/path", "key 7F6E5D4C3B2A1908 here", "KEY 7f6e5d4c3b2a1908", "7F6E5D4C3B2A190",
    "ünïcödé ✓", "201131798120d62d57687413b8b831e4",
]


def test_redact_text_equals_the_three_substitutions_on_every_text():
    register_secrets("7F6E5D4C3B2A1908")
    for text in TEXTS:
        assert redact_text(text) == redacted_the_long_way(text), text


def test_a_secret_registered_later_is_masked_in_text_that_passed_before():
    text = "value Q1W2E3R4T5Y6U7I8 in a message"
    assert redact_text(text) == text
    register_secrets("q1w2e3r4t5y6u7i8")
    assert redact_text(text) == f"value {MASK} in a message"


def test_secret_key_verdict_is_the_patterns_and_the_memory_is_bounded():
    keys = ["token", "Token", "hash_key", "HashID", "x_key_id", "api_token", "cookie", "a1", "b2", "a3",
            "token_id", "pay_token", "route", "duration_ms", "Authorization", "passwd", "order_no"]
    for _ in range(2):  # computed, then remembered
        expected = [bool(jsonlog._SECRET_KEY.search(k)) for k in keys]
        assert [jsonlog._is_secret_key(k) for k in keys] == expected
    for n in range(jsonlog._SECRET_KEYS_MAX + 10):
        jsonlog._is_secret_key(f"field_{n}")
    assert len(jsonlog._secret_keys) <= jsonlog._SECRET_KEYS_MAX
    assert jsonlog._is_secret_key("password") is True


def test_line_is_the_json_that_json_dumps_writes():
    record = logging.getLogger("test.fast").makeRecord(
        "test.fast", logging.INFO, "f", 1, "naïve ✓", (), None,
        extra={"obj": object(), "n": 1.5, "flag": None, "nested": {"password": "p", "ok": ["é", 2]}})
    line = JsonFormatter().format(record)
    assert line == json.dumps(json.loads(line), ensure_ascii=False)
    out = json.loads(line)
    assert out["msg"] == "naïve ✓"
    assert out["nested"] == {"password": MASK, "ok": ["é", 2]}
    assert re.fullmatch(r"<object object at 0x[0-9a-f]+>", out["obj"])
