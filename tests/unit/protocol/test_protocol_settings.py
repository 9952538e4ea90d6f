"""core.settings as the bank client relies on it: clear errors, no secret in a repr, safe defaults."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import NoSuchModuleError

from core.endpoints import DEFAULT_DATABASE_URL, database_url_from, normalize_database_url
from core.env import env_float, env_int
from core.settings import HASH_KEY_NAMES, SettingsError, load_settings
from core.variables import SANDBOX_HASH_KEYS, SANDBOX_KEY_ID, SANDBOX_SHOP_NO

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
    settings = load_settings(_env(API_TOKEN="tok-9f8e7d-0123456789abcdef0123456789", DATABASE_URL="postgresql://u:pw-31337@db/qpay"))
    text = repr(settings) + str(settings) + repr(settings.shop) + repr(settings.shop.hash_id)
    for secret in (*HASH_KEYS.values(), HASH_ID, KEY_ID, "tok-9f8e7d-0123456789abcdef0123456789", "pw-31337"):
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
    "url", [REAL_BANK, "https://api.sinopac.com/funBIZ/QPay.WebAPI/api/", "https://10.0.0.5/api/"]
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


# -- DATABASE_URL: Heroku's postgres:// scheme ------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:pw-31337@db.example:5432/qpay", "postgresql://u:pw-31337@db.example:5432/qpay"),
        ("postgres+psycopg2://u:pw@db/qpay?sslmode=require", "postgresql+psycopg2://u:pw@db/qpay?sslmode=require"),
        ("postgresql://u:pw@db/qpay", "postgresql://u:pw@db/qpay"),
        ("postgresql+psycopg2://u:pw@db/qpay", "postgresql+psycopg2://u:pw@db/qpay"),
        ("sqlite:////tmp/x/postgres://.db", "sqlite:////tmp/x/postgres://.db"),
    ],
)
def test_only_the_postgres_scheme_is_rewritten(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected


def test_a_heroku_database_url_is_one_sqlalchemy_accepts() -> None:
    # given the URL Heroku sets
    heroku = "postgres://u:pw-31337@ec2-1-2-3-4.example.com:5432/d8f7"
    # when the settings read it
    settings = load_settings(_env(DATABASE_URL=heroku))
    # then SQLAlchemy 2 finds its PostgreSQL dialect (it has none named "postgres"), password intact
    url = make_url(settings.database_url)
    assert url.get_dialect().name == "postgresql"
    assert (url.password, url.host, url.database) == ("pw-31337", "ec2-1-2-3-4.example.com", "d8f7")
    with pytest.raises(NoSuchModuleError):
        make_url(heroku).get_dialect()
    # and the password stays out of the settings' repr
    assert "pw-31337" not in repr(settings)


def test_database_url_from_falls_back_in_order() -> None:
    assert database_url_from({}) == DEFAULT_DATABASE_URL
    assert database_url_from({}, "sqlite:///other.db") == "sqlite:///other.db"
    assert database_url_from({"DATABASE_URL": ""}, "postgres://h/db") == "postgresql://h/db"
    assert database_url_from({"DATABASE_URL": "postgres://h/db"}, "sqlite:///other.db") == "postgresql://h/db"


# -- numbers from the environment: one parser for settings and the Celery config ----------------------


@pytest.mark.parametrize(
    ("read", "raw", "message"),
    [
        (env_float, "soon", "SOME_SECONDS must be a number"),
        (env_float, "0.5", "SOME_SECONDS must be at least 1"),
        (env_int, "2.5", "SOME_SECONDS must be a whole number"),
        (env_int, "0", "SOME_SECONDS must be at least 1"),
    ],
)
def test_a_bad_number_names_the_variable_but_not_the_value(read, raw: str, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        read({"SOME_SECONDS": raw}, "SOME_SECONDS", 3, 1)
    assert str(info.value).startswith(message)
    assert raw not in str(info.value)


@pytest.mark.parametrize("read", [env_float, env_int])
def test_an_unset_or_empty_number_takes_the_default(read) -> None:
    assert read({}, "SOME_SECONDS", 3, 1) == 3
    assert read({"SOME_SECONDS": ""}, "SOME_SECONDS", 3, 1) == 3
    assert read({"SOME_SECONDS": "7"}, "SOME_SECONDS", 3, 1) == 7


@pytest.mark.parametrize("url", ["http://apisbx.sinopac.com/funBIZ-Sbx/QPay.WebAPI/api/", "http://10.0.0.5/api/",
                                 "http://127.example.com/api/", "ftp://127.0.0.1/api/"])
def test_a_bank_url_that_is_not_https_stops_start_up_naming_the_variable(url: str) -> None:
    with pytest.raises(SettingsError, match=r"^QPAY_API_BASE_URL must be https://"):
        load_settings(_env(QPAY_API_BASE_URL=url))


@pytest.mark.parametrize("url", ["http://127.0.0.1:8100/api/", "http://localhost:8100/api/", "http://[::1]/api/"])
def test_plain_http_is_allowed_only_for_loopback(url: str) -> None:
    assert load_settings(_env(QPAY_API_BASE_URL=url)).api_base_url == url


def test_plain_http_to_a_named_private_host_needs_it_listed() -> None:
    env = _env(QPAY_API_BASE_URL="http://sandbox:8100/QPay.WebAPI/api/", QPAY_API_HTTP_HOSTS="sandbox")
    assert load_settings(env).api_base_url.startswith("http://sandbox:8100")


def test_trust_and_abuse_settings_have_their_defaults_and_name_bad_values() -> None:
    settings = load_settings(_env())
    assert settings.confirm_payments is True
    assert (settings.bank_rate, settings.max_attempts, settings.callback_allow) == (10.0, 12, ())
    assert not load_settings(_env(QPAY_CONFIRM_PAYMENTS="0")).confirm_payments
    allow = load_settings(_env(QPAY_CALLBACK_ALLOW="203.0.113.0/24, 10.0.0.5")).callback_allow
    assert [str(n) for n in allow] == ["203.0.113.0/24", "10.0.0.5/32"]
    for name, bad in (("QPAY_CONFIRM_PAYMENTS", "maybe"), ("QPAY_BANK_RATE", "-1"),
                      ("RESOLVE_MAX_ATTEMPTS", "0"), ("QPAY_CALLBACK_ALLOW", "10.0.0.0/33")):
        with pytest.raises(SettingsError, match=rf"^{name}"):
            load_settings(_env(**{name: bad}))
