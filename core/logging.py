"""JSON line logging for every process (web, worker, beat, CLI), with redaction.

One JSON object per line. Context fields (request_id, task_id, order_no, pay_token) come from
`log_context()` or from a record's `extra`; a PayToken is always shortened to 8 characters + "…".
Secrets never reach the output: keys that name a secret are masked, URL passwords and bearer
tokens are cut out of text, and values registered with `register_secrets()` are replaced wherever
they appear (message, arguments, tracebacks).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.settings import Settings

__all__ = [
    "CONTEXT_FIELDS",
    "JsonFormatter",
    "bind_context",
    "configure_logging",
    "current_context",
    "install_record_factory",
    "log_context",
    "redact_records",
    "redact_text",
    "register_secrets",
    "register_settings_secrets",
    "reset_context",
    "short_token",
]

CONTEXT_FIELDS = ("request_id", "task_id", "shop_no", "order_no", "pay_token")
MASK = "***"

_context: ContextVar[Mapping[str, str]] = ContextVar("qpay_log_context", default={})  # noqa: B039
_secret_values: set[str] = set()
_secret_lock = threading.Lock()
_secret_pattern: re.Pattern[str] | None = None
_secret_keys: dict[str, bool] = {}  # _SECRET_KEY's verdict per key (see _is_secret_key)
_SECRET_KEYS_MAX = 4096

# Keys whose values are never printed, whatever they hold.
_SECRET_KEY = re.compile(
    r"(pass(word|wd)?|secret|hash_?(key|id)|key_?id|api_?token|authorization|cookie|credential|"
    r"^a[12]$|^b[12]$|^token$)",
    re.IGNORECASE,
)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@", re.I)
_BEARER = re.compile(r"(bearer\s+)[^\s,;\"']+", re.IGNORECASE)
# What any of the three substitutions of redact_text needs to find: "://" (a URL password), "bearer"
# and a space (a bearer token) or a registered secret. Text in which one search finds none of them is
# returned as it is (most of a line's values: methods, routes, states, ids).
_SUSPECT_BASE = r"://|bearer\s"
_suspect_pattern: re.Pattern[str] = re.compile(_SUSPECT_BASE, re.IGNORECASE)
# The record attributes the stdlib sets; everything else on a record came from `extra`.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys() | {"message", "asctime"}
)


def short_token(pay_token: str) -> str:
    """A PayToken as logs may show it: the first 8 characters + "…" (enough to grep, not to replay)."""
    return pay_token[:8] + "…"


def register_secrets(*values: str | None) -> None:
    """Values that must never appear in a log line (hash keys, HashID, X-KeyID, API token)."""
    global _secret_pattern, _suspect_pattern
    with _secret_lock:
        _secret_values.update(v for v in values if v and len(v) >= 4)
        ordered = sorted(_secret_values, key=len, reverse=True)
        joined = "|".join(re.escape(v) for v in ordered)
        _secret_pattern = re.compile(joined, re.IGNORECASE) if ordered else None
        suspect = f"{_SUSPECT_BASE}|{joined}" if ordered else _SUSPECT_BASE
        _suspect_pattern = re.compile(suspect, re.IGNORECASE)


def register_settings_secrets(settings: Settings) -> None:
    """Every secret of the settings (Settings.log_secrets), masked from now on: each process's entrypoint
    calls this once, before its first log line can carry one."""
    register_secrets(*settings.log_secrets())


def redact_text(text: str) -> str:
    """Remove URL passwords, bearer tokens and registered secret values from free text."""
    if _suspect_pattern.search(text) is None:  # none of the substitutions below could match
        return text
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    pattern = _secret_pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return text


def _is_secret_key(key: str) -> bool:
    """_SECRET_KEY's verdict, remembered per key: a process logs the same few dozen keys on every line
    (the access line's dozen per callback), and the search was a third of the formatter's time."""
    found = _secret_keys.get(key)
    if found is None:
        if len(_secret_keys) >= _SECRET_KEYS_MAX:  # keys of logged mappings can be anything: bounded
            _secret_keys.clear()
        found = _secret_keys[key] = _SECRET_KEY.search(key) is not None
    return found


def _clean(key: str, value: Any) -> Any:
    if key == "pay_token" and isinstance(value, str):
        return short_token(value)
    if _is_secret_key(key):
        return MASK
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {str(k): _clean(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean("", v) for v in value]
    return redact_text(repr(value))


def current_context() -> dict[str, str]:
    return dict(_context.get())


def bind_context(**fields: str | None) -> Token[Mapping[str, str]]:
    """Add fields to the logging context of this thread/task; undo with `reset_context(token)`."""
    merged = {**_context.get(), **{k: v for k, v in fields.items() if v is not None}}
    return _context.set(merged)


def reset_context(token: Token[Mapping[str, str]]) -> None:
    _context.reset(token)


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """`with log_context(order_no=...):` every line logged inside carries the fields."""
    token = bind_context(**fields)
    try:
        yield
    finally:
        reset_context(token)


_CONTEXT_ATTR = "_qpay_context"
_factory_lock = threading.Lock()


class _RecordFactory:
    """One of our record factories, wrapping the one installed before it. `kind` says what it adds,
    so installing the same kind twice in a row is a no-op."""

    def __init__(self, previous: Callable[..., logging.LogRecord], kind: str,
                 stamp: Callable[[logging.LogRecord], None]) -> None:
        self.previous, self.kind, self.stamp = previous, kind, stamp

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.previous(*args, **kwargs)
        self.stamp(record)
        return record


def _install_factory(kind: str, stamp: Callable[[logging.LogRecord], None]) -> None:
    with _factory_lock:
        previous = logging.getLogRecordFactory()
        if isinstance(previous, _RecordFactory) and previous.kind == kind:
            return
        logging.setLogRecordFactory(_RecordFactory(previous, kind, stamp))


def _stamp_context(record: logging.LogRecord) -> None:
    setattr(record, _CONTEXT_ATTR, _context.get())


def _redact_message(record: logging.LogRecord) -> None:
    record.msg, record.args = redact_text(_message(record)), None


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # a bad format string must not lose the line
        return f"{record.msg!r} {record.args!r}"


def install_record_factory() -> None:
    """Stamp the context onto each record when it is created, so a handler that formats later
    (queue, capture) still sees the request or task it came from. Idempotent."""
    _install_factory("context", _stamp_context)


def redact_records() -> None:
    """Redact each record's message when it is created, for a process whose handlers are not ours
    (Flower logs through tornado's formatter). Idempotent."""
    _install_factory("redact", _redact_message)


class _JsonHandler(logging.StreamHandler[IO[str]]):
    """The handler configure_logging adds, told apart from a host's so a second call replaces it."""


# json.dumps with these options builds a new encoder per call; one shared encoder writes the same text.
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, context fields, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact_text(_message(record)),
        }
        context = getattr(record, _CONTEXT_ATTR, None)
        for key, value in (context if context is not None else _context.get()).items():
            out[key] = _clean(key, value)
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                out[key] = _clean(key, value)
        if record.exc_info:
            out["exc"] = redact_text(self.formatException(record.exc_info))
        if record.stack_info:
            out["stack"] = redact_text(self.formatStack(record.stack_info))
        return _ENCODER.encode(out)


def skip_unused_record_fields() -> None:
    """Records stop collecting the caller's file, line and function, the thread and the process: the
    JSON line carries none of them, and the stack walk was ~40% of a line's cost (the logging HOWTO's
    "Optimization" settings). Tracebacks (exc_info, stack_info) are unaffected."""
    logging._srcfile = None  # the documented switch (logging HOWTO)
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def configure_logging(level: str = "INFO", stream: IO[str] | None = None) -> None:
    """Route the root logger to one JSON handler. Idempotent, and adds none if a host (gunicorn's
    logconfig_dict) already gave the root a JSON handler, so no line is written twice."""
    root = logging.getLogger()
    root.setLevel(level)
    install_record_factory()
    skip_unused_record_fields()
    for handler in list(root.handlers):
        if isinstance(handler, _JsonHandler):
            root.removeHandler(handler)
        elif isinstance(handler.formatter, JsonFormatter) and stream is None:
            return
    handler = _JsonHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
