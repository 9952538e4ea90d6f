"""core.checkout and its settings: signed checkout links, the shop's name, the way back to the shop."""

from __future__ import annotations

import pytest

from core.checkout import checkout_token, checkout_token_ok, checkout_url, shop_display_name, shop_return_url
from core.secrets import Secret
from core.settings import SettingsError, load_settings

SECRET = Secret("s" * 40)
LOCAL = {"QPAY_API_BASE_URL": "http://127.0.0.1:9/QPay.WebAPI/api/"}


def settings(**env: str):  # type: ignore[no-untyped-def]
    return load_settings({**LOCAL, **env})


def test_token_is_bound_to_the_order_and_the_secret():
    token = checkout_token(SECRET, "A-1")
    assert len(token) == 43
    assert token == checkout_token(SECRET, "A-1")
    assert checkout_token_ok(SECRET, "A-1", token)
    assert not checkout_token_ok(SECRET, "A-2", token)
    assert not checkout_token_ok(Secret("t" * 40), "A-1", token)
    assert not checkout_token_ok(SECRET, "A-1", token[:-1])
    assert not checkout_token_ok(SECRET, "A-1", None)
    assert not checkout_token_ok(None, "A-1", token)
    assert not checkout_token_ok(SECRET, "A-1", "\udcff" + token)  # undecodable input is just wrong


def test_checkout_url_needs_the_secret():
    assert checkout_url(settings(), "A-1") is None
    url = checkout_url(settings(CHECKOUT_SECRET="x" * 32, PUBLIC_BASE_URL="https://pay.example/"), "A-1")
    assert url == f"https://pay.example/checkout/A-1?t={checkout_token(Secret('x' * 32), 'A-1')}"


def test_shop_name_defaults_to_the_shop_number():
    assert shop_display_name(settings(), "NA0001_001") == "NA0001_001"
    assert shop_display_name(settings(SHOP_NAME=" 茶葉小舖 "), "NA0001_001") == "茶葉小舖"


def test_with_several_shops_names_are_per_shop_and_links_name_the_shop():
    import json

    keys = {"a1": "1" * 16, "a2": "2" * 16, "b1": "3" * 16, "b2": "4" * 16, "key_id": "k"}
    shops = [{"shop_no": "NA0001_001", "name": "Main", **keys},
             {"shop_no": "NA0001_002", **keys, "a1": "5" * 16, "key_id": "k2"}]
    s = settings(QPAY_SHOPS=json.dumps(shops), SHOP_NAME="Tea", CHECKOUT_SECRET="x" * 32)
    assert shop_display_name(s, "NA0001_001") == "Main"
    assert shop_display_name(s, "NA0001_002") == "Tea"
    assert shop_display_name(s, "NA0009_001") == "Tea"
    url = checkout_url(s, "A-1", "NA0001_002")
    token = checkout_token(Secret("x" * 32), "A-1", "NA0001_002")
    assert url == f"http://127.0.0.1:8000/checkout/A-1?t={token}&shop=NA0001_002"
    assert token != checkout_token(Secret("x" * 32), "A-1", "NA0001_001")
    assert not checkout_token_ok(Secret("x" * 32), "A-1", token, "NA0001_001")


def test_shop_return_url_fills_in_the_order_number_url_encoded():
    s = settings(SHOP_RETURN_URL="https://shop.example/orders/{order_no}?from=qpay")
    assert shop_return_url(s, "A-1") == "https://shop.example/orders/A-1?from=qpay"
    assert shop_return_url(s, "a/b?c") == "https://shop.example/orders/a%2Fb%3Fc?from=qpay"
    assert shop_return_url(settings(), "A-1") is None
    assert settings().shop_return_delay == 5


@pytest.mark.parametrize(("env", "message"), [
    ({"SHOP_RETURN_URL": "javascript:alert(1)//{order_no}"}, "SHOP_RETURN_URL must be an absolute http"),
    ({"SHOP_RETURN_URL": "/orders/{order_no}"}, "SHOP_RETURN_URL must be an absolute http"),
    ({"SHOP_RETURN_URL": "ftp://shop.example/{order_no}"}, "SHOP_RETURN_URL must be an absolute http"),
    ({"SHOP_RETURN_URL": "https://shop.example/{order}"}, "SHOP_RETURN_URL may hold only"),
    ({"SHOP_RETURN_URL": "https://shop.example/a b"}, "SHOP_RETURN_URL may hold only"),
    ({"SHOP_RETURN_DELAY": "-1"}, "SHOP_RETURN_DELAY must be at least 0"),
    ({"SHOP_RETURN_DELAY": "soon"}, "SHOP_RETURN_DELAY must be a whole number"),
    ({"SHOP_RETURN_DELAY": "601"}, "SHOP_RETURN_DELAY must be at most 600"),
    ({"CHECKOUT_SECRET": "short"}, "CHECKOUT_SECRET must be at least 32 characters"),
    ({"SHOP_NAME": "x" * 61}, "SHOP_NAME must be at most 60 characters"),
])
def test_bad_page_settings_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message) as raised:
        settings(**env)
    assert "alert" not in str(raised.value)
    assert "short" not in str(raised.value)


def test_checkout_secret_never_shows_in_a_repr():
    assert "y" * 32 not in repr(settings(CHECKOUT_SECRET="y" * 32))
