"""Several shops in one deployment (core.shops): QPAY_SHOPS, QPAY_SHOPS_FILE, the single-shop variables
beside them, `next` key sets; every error names the shop and field, never a value."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from core.settings import SettingsError, UnknownShop, load_settings

from .conftest import HASH_KEYS, KEY_ID, SHOP_NO

REAL_BANK = "https://apisbx.sinopac.com/funBIZ-Sbx/QPay.WebAPI/api/"
SINGLE = {"QPAY_SHOP_NO": SHOP_NO, "QPAY_KEY_ID": KEY_ID, **HASH_KEYS}
KEYS_2 = {"a1": "1111111111111111", "a2": "2222222222222222", "b1": "3333333333333333",
          "b2": "4444444444444444", "key_id": "key-two-secret"}
KEYS_3 = {"a1": "5555555555555555", "a2": "6666666666666666", "b1": "7777777777777777",
          "b2": "8888888888888888", "key_id": "key-three-secret"}
VALUES = [*HASH_KEYS.values(), KEY_ID, *KEYS_2.values(), *KEYS_3.values()]


def _load(**env: str) -> Any:
    return load_settings({"QPAY_API_BASE_URL": REAL_BANK, **env})


def _shops(*items: dict[str, Any]) -> str:
    return json.dumps(list(items))


def test_the_single_shop_variables_alone_still_make_one_shop() -> None:
    settings = _load(**SINGLE)
    assert [s.shop_no for s in settings.all_shops] == [SHOP_NO]
    assert settings.shop_for(None).shop_no == SHOP_NO
    assert settings.shop.next_keys is None


def test_qpay_shops_declares_several_shops_with_names_and_next_sets() -> None:
    settings = _load(QPAY_SHOPS=_shops(
        {"shop_no": "NA0001_001", "name": "Main store", **KEYS_2},
        {"shop_no": "NA0001_002", **KEYS_3, "next": KEYS_2 | {"a1": "9999999999999999", "key_id": "k4"}},
    ))
    first, second = settings.all_shops
    names = (first.shop_no, first.display_name, second.display_name)
    assert names == ("NA0001_001", "Main store", "NA0001_002")
    assert settings.shop_no == "NA0001_001"  # the first is the default
    assert second.next_keys is not None
    assert [n for n, _ in second.key_sets()] == ["active", "next"]
    assert settings.shop_for("NA0001_002") is second
    with pytest.raises(UnknownShop):
        settings.shop_for("NA0009_001")


def test_single_shop_variables_qpay_shops_and_the_file_add_up(tmp_path: Path) -> None:
    path = tmp_path / "shops.json"
    path.write_text(_shops({"shop_no": "NA0001_003", **KEYS_3}))
    settings = _load(**SINGLE, QPAY_SHOPS=_shops({"shop_no": "NA0001_002", **KEYS_2}),
                     QPAY_SHOPS_FILE=str(path))
    assert [s.shop_no for s in settings.all_shops] == [SHOP_NO, "NA0001_002", "NA0001_003"]
    assert settings.shop_numbers == frozenset({SHOP_NO, "NA0001_002", "NA0001_003"})


def test_the_single_shop_next_variables_make_a_next_set() -> None:
    settings = _load(**SINGLE, QPAY_NEXT_HASH_A1=KEYS_2["a1"], QPAY_NEXT_HASH_A2=KEYS_2["a2"],
                     QPAY_NEXT_HASH_B1=KEYS_2["b1"], QPAY_NEXT_HASH_B2=KEYS_2["b2"], QPAY_NEXT_KEY_ID="k2")
    assert settings.shop.next_keys is not None
    assert settings.shop.active.fingerprint != settings.shop.next_keys.fingerprint


@pytest.mark.parametrize(("shops", "message"), [
    (_shops({"shop_no": "NA0001_002", **(KEYS_2 | {"b2": "xyz"})}),
     "QPAY_SHOPS: shop NA0001_002: b2 is missing or malformed"),
    (_shops({"shop_no": "NA0001_002", **(KEYS_2 | {"key_id": ""})}),
     "QPAY_SHOPS: shop NA0001_002: key_id is missing"),
    (_shops({"shop_no": "NA0001_002", **KEYS_2, "next": KEYS_3 | {"a2": "1"}}),
     "QPAY_SHOPS: shop NA0001_002: next.a2 is missing or malformed"),
    (_shops({"shop_no": "NA0001_002", **KEYS_2, "next": "x"}), "QPAY_SHOPS: shop NA0001_002: next must be"),
    (_shops({"shop_no": "bad shop", **KEYS_2}), "QPAY_SHOPS: entry 0: shop_no is missing or malformed"),
    (_shops({"shop_no": "NA0001_002", **KEYS_2, "hashkey": "1"}),
     "QPAY_SHOPS: shop NA0001_002: unknown field"),
    (_shops({"shop_no": "NA0001_002", **KEYS_2}, {"shop_no": "NA0001_002", **KEYS_3}),
     "shop NA0001_002 is declared twice"),
    (_shops({"shop_no": "NA0001_002", **KEYS_2}, {"shop_no": "NA0001_003", **KEYS_2}),
     "shop NA0001_003: its active key set is also another shop's"),
    ("{not json", "QPAY_SHOPS must be JSON"),
    ("[]", "QPAY_SHOPS must be a non-empty JSON list"),
])
def test_a_bad_declaration_names_the_shop_and_field_never_the_value(shops: str, message: str) -> None:
    with pytest.raises(SettingsError, match=f"^{re.escape(message)}") as info:
        _load(QPAY_SHOPS=shops)
    assert not [v for v in VALUES if len(v) > 4 and v in str(info.value)]


def test_an_unreadable_shops_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"^QPAY_SHOPS_FILE cannot be read"):
        _load(QPAY_SHOPS_FILE=str(tmp_path / "missing.json"))


def test_secrets_lists_every_key_of_every_set_and_repr_shows_none() -> None:
    settings = _load(**SINGLE, QPAY_SHOPS=_shops({"shop_no": "NA0001_002", **KEYS_2, "next": KEYS_3}))
    secrets = set(settings.log_secrets())
    assert set(VALUES) <= secrets
    text = repr(settings) + "".join(repr(s) for s in settings.all_shops)
    assert not [v for v in VALUES if v in text]


def test_fingerprints_tell_sets_apart_and_reveal_no_key() -> None:
    settings = _load(QPAY_SHOPS=_shops({"shop_no": "NA0001_002", **KEYS_2, "next": KEYS_3}))
    shop = settings.shop
    assert shop.next_keys is not None
    active, nxt = shop.active.fingerprint, shop.next_keys.fingerprint
    assert len(active) == 12
    assert active != nxt
    assert not [v for v in VALUES if v in active + nxt]
