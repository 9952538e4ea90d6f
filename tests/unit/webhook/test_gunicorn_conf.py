"""gunicorn.conf.py reads its numbers like every other setting: a bad one stops the server, named."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from core.settings import SettingsError

CONF = Path(__file__).resolve().parents[3] / "gunicorn.conf.py"


def load_conf() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gunicorn_conf_under_test", CONF)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_defaults_when_nothing_is_set(monkeypatch):
    for name in ("PORT", "WEB_BIND", "WEB_CONCURRENCY", "WEB_THREADS", "WEB_TIMEOUT", "WEB_MAX_REQUESTS"):
        monkeypatch.delenv(name, raising=False)
    conf = load_conf()
    assert (conf.bind, conf.workers, conf.threads, conf.timeout) == ("0.0.0.0:8000", 2, 4, 30)
    assert conf.max_requests == 100_000


def test_values_from_the_environment(monkeypatch):
    monkeypatch.setenv("PORT", "5000")
    monkeypatch.setenv("WEB_THREADS", "8")
    conf = load_conf()
    assert conf.bind == "0.0.0.0:5000"
    assert conf.threads == 8


@pytest.mark.parametrize(("name", "raw"), [("WEB_THREADS", "abc"), ("WEB_CONCURRENCY", "0"), ("PORT", "-1")])
def test_a_bad_number_stops_the_server_naming_the_variable(monkeypatch, name, raw):
    monkeypatch.setenv(name, raw)
    with pytest.raises(SettingsError, match=name):
        load_conf()
