"""core.settings as the bank client relies on it: clear errors, no secret in a repr, safe defaults."""

from __future__ import annotations

import pytest

from core.settings import (
    HASH_KEY_NAMES,
    SANDBOX_HASH_KEYS,
    SANDBOX_KEY_ID,
    SANDBOX_SHOP_NO,
    SettingsError,
    load_settings,
)

from .conftest import HASH_ID, HASH_KEYS, KEY_ID, SHOP_NO

REAL_BANK = "https://apisbx.sinopac.com/funBIZ-Sbx/QPay.WebAPI/api/"


def _env(**overrides: str) -> dict[str, str]:
    env = {"QPAY_API_BASE_URL": REAL_BANK, "QPAY_SHOP_NO": SHOP_NO, "QPAY_KEY_ID": KEY_ID, **HASH_KEYS}
    env.update(overrides)
    return {k: v for k, v in env.items() if v != "<unset>"}


@pytest.mark.parametrize("name", HASH_KEY_NAMES)
def test_missing_hash_key_names_the_variable(name: str) -> None:
    with pytest.raises(SettingsError, match=rf"^{name} is missing or malformed"):
        load_settings(_env(**{name: "<unset>"}))


@pytest.mark.parametrize("name", HASH_KEY_NAMES)
def test_malformed_hash_key_names_the_variable_but_not_the_value(name: str) -> None:
    bad = "0A2A9C1D5E7B40ZQ"
    with pytest.raises(SettingsError, match=rf"^{name} is missing or malformed") as info:
        load_settings(_env(**{name: bad}))
    assert bad not in str(info.value)


def test_missing_key_id_names_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"^QPAY_KEY_ID is missing"):
        load_settings(_env(QPAY_KEY_ID="<unset>"))


def test_malformed_shop_no_names_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"^QPAY_SHOP_NO"):
        load_settings(_env(QPAY_SHOP_NO="NA0001 001; drop"))


@pytest.mark.parametrize(("name", "value"), [("QPAY_READ_TIMEOUT", "soon"), ("QPAY_CONNECT_TIMEOUT", "0")])
def test_bad_timeout_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=rf"^{name} must"):
        load_settings(_env(**{name: value}))


def test_api_base_url_must_be_http() -> None:
    with pytest.raises(SettingsError, match=r"^QPAY_API_BASE_URL"):
        load_settings(_env(QPAY_API_BASE_URL="ftp://bank.example/api/"))


def test_secrets_never_appear_in_repr_or_str_of_settings() -> None:
    settings = load_settings(_env(API_TOKEN="tok-9f8e7d", DATABASE_URL="postgresql://u:pw-31337@db/qpay"))
    text = repr(settings) + str(settings) + repr(settings.shop) + repr(settings.shop.hash_id)
    for secret in (*HASH_KEYS.values(), HASH_ID, KEY_ID, "tok-9f8e7d", "pw-31337"):
        assert secret.lower() not in text.lower()
    # and yet the values are there for the one place that needs them
    assert settings.shop.hash_id.reveal() == HASH_ID
    assert settings.shop.key_id.reveal() == KEY_ID


def test_configured_keys_are_used_and_timeouts_read() -> None:
    settings = load_settings(_env(QPAY_CONNECT_TIMEOUT="2.5", QPAY_READ_TIMEOUT="12"))
    assert (settings.shop_no, settings.sandbox_defaults) == (SHOP_NO, False)
    assert (settings.connect_timeout, settings.read_timeout) == (2.5, 12.0)
    assert settings.api_base_url == REAL_BANK


def test_base_url_gets_a_trailing_slash() -> None:
    assert load_settings(_env(QPAY_API_BASE_URL=REAL_BANK.rstrip("/"))).api_base_url == REAL_BANK


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8100/QPay.WebAPI/api/", "http://localhost:9000/api/", "http://[::1]:8100/api/"]
)
def test_no_keys_and_a_loopback_bank_uses_the_public_sandbox_keys(url: str) -> None:
    settings = load_settings({"QPAY_API_BASE_URL": url})
    assert settings.sandbox_defaults is True
    assert settings.shop_no == SANDBOX_SHOP_NO
    assert tuple(k.reveal() for k in settings.shop.hash_keys) == SANDBOX_HASH_KEYS
    assert settings.shop.key_id.reveal() == SANDBOX_KEY_ID


def test_no_variables_at_all_defaults_to_the_local_sandbox() -> None:
    settings = load_settings({})
    assert settings.api_is_local
    assert settings.sandbox_defaults


@pytest.mark.parametrize(
    "url", [REAL_BANK, "https://api.sinopac.com/funBIZ/QPay.WebAPI/api/", "http://10.0.0.5/api/"]
)
def test_no_keys_and_a_remote_bank_is_an_error_never_sandbox_keys(url: str) -> None:
    with pytest.raises(SettingsError, match=r"^QPAY_SHOP_NO"):
        load_settings({"QPAY_API_BASE_URL": url})


def test_partial_keys_with_a_loopback_bank_are_an_error_not_silently_replaced() -> None:
    with pytest.raises(SettingsError, match=r"^QPAY_HASH_A2"):
        load_settings(
            {
                "QPAY_API_BASE_URL": "http://127.0.0.1:8100/api/",
                "QPAY_SHOP_NO": SHOP_NO,
                "QPAY_HASH_A1": HASH_KEYS["QPAY_HASH_A1"],
                "QPAY_KEY_ID": KEY_ID,
            }
        )
