"""Fixtures for the protocol tests: the vectors file, a stub bank on loopback, a client pointed at it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings, load_settings
from core.sinopac.client import QPayClient
from core.sinopac.types import BankCallRecord

from .bankstub import StubBank

VECTORS_PATH = Path(__file__).resolve().parents[2] / "data" / "vectors.json"

# Distinctive values, so a leak into an error text is unmistakable.
HASH_KEYS = {
    "QPAY_HASH_A1": "0A2A9C1D5E7B4086",
    "QPAY_HASH_A2": "0BB2C3D4E5F60718",
    "QPAY_HASH_B1": "9E8D7C6B5A493827",
    "QPAY_HASH_B2": "9E1E2D3C4B5A6978",
}
HASH_ID = "01985FC9BB8D479E009351571113515F"
KEY_ID = "XKEYID-7f3a9c2e-secret"
SHOP_NO = "NA0001_001"
SECRETS = (*HASH_KEYS.values(), HASH_ID, KEY_ID)


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    return json.loads(VECTORS_PATH.read_text(encoding="utf-8"))


@pytest.fixture
def bank() -> Iterator[StubBank]:
    stub = StubBank(hash_id=HASH_ID)
    server, thread = stub.serve()
    stub.base_url = f"http://127.0.0.1:{server.server_address[1]}/QPay.WebAPI/api/"
    yield stub
    stub.release.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def make_settings(base_url: str, **extra: str) -> Settings:
    env = {
        "QPAY_API_BASE_URL": base_url,
        "QPAY_SHOP_NO": SHOP_NO,
        "QPAY_KEY_ID": KEY_ID,
        "QPAY_CONNECT_TIMEOUT": "1",
        "QPAY_READ_TIMEOUT": "0.5",
        **HASH_KEYS,
        **extra,
    }
    return load_settings(env)


@pytest.fixture
def records() -> list[BankCallRecord]:
    return []


@pytest.fixture
def client(bank: StubBank, records: list[BankCallRecord]) -> Iterator[QPayClient]:
    qpay = QPayClient(make_settings(bank.base_url), observer=records.append)
    yield qpay
    qpay.close()


def assert_no_secret(*texts: str, extra: tuple[str, ...] = ()) -> None:
    """No hash key, HashID or X-KeyID (any letter case) in any of the texts."""
    for text in texts:
        for secret in (*SECRETS, *extra):
            assert secret.lower() not in text.lower(), "a secret leaked into an error text"
