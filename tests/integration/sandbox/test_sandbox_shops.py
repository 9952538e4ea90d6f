"""The sandbox as the bank of several shops: OrderNos unique per shop, key changes at run time."""

from __future__ import annotations

import json

import pytest

from core.settings import load_settings
from core.sinopac.client import QPayClient
from core.sinopac.errors import BankProtocolError
from core.variables import SANDBOX_HASH_KEYS, SANDBOX_KEY_ID, SANDBOX_SHOP_NO

from .conftest import FAST, create_card, start

pytestmark = pytest.mark.integration

TWO = {"shop_no": "NA0002_001", "a1": "1111111111111111", "a2": "2222222222222222",
       "b1": "3333333333333333", "b2": "4444444444444444", "key_id": "key-two"}
NEW = {"a1": "5555555555555555", "a2": "6666666666666666", "b1": "7777777777777777",
       "b2": "8888888888888888", "key_id": "key-two-new"}


def _client(api: str, keys: dict[str, str], next_keys: dict[str, str] | None = None) -> QPayClient:
    shop = {**keys, "shop_no": TWO["shop_no"], **({"next": next_keys} if next_keys else {})}
    return QPayClient(load_settings({"QPAY_API_BASE_URL": api, "QPAY_SHOPS": json.dumps([shop])}))


def test_two_shops_may_use_one_order_no_and_the_admin_api_tells_them_apart() -> None:
    bank = start(*FAST, SANDBOX_EXTRA_SHOPS=json.dumps([TWO]))
    try:
        one = load_settings({"QPAY_API_BASE_URL": bank.api, "QPAY_SHOP_NO": SANDBOX_SHOP_NO,
                             "QPAY_KEY_ID": SANDBOX_KEY_ID,
                             **dict(zip(("QPAY_HASH_A1", "QPAY_HASH_A2", "QPAY_HASH_B1", "QPAY_HASH_B2"),
                                        SANDBOX_HASH_KEYS, strict=True))})
        with QPayClient(one) as first, _client(bank.api, TWO) as second:
            a, b = create_card(first, "SHARED-1"), create_card(second, "SHARED-1")
        assert (a.shop_no, b.shop_no) == (SANDBOX_SHOP_NO, "NA0002_001")
        assert bank.get("/sandbox/orders/SHARED-1").status_code == 409  # which shop's?
        paid = bank.post(f"/sandbox/orders/SHARED-1/pay?shop={TWO['shop_no']}", {"outcome": "paid"})
        assert paid.status_code == 200
        views = {s: bank.get(f"/sandbox/orders/SHARED-1?shop={s}").json()
                 for s in (SANDBOX_SHOP_NO, "NA0002_001")}
        assert views[SANDBOX_SHOP_NO]["state"] == "unpaid"
        assert views["NA0002_001"]["state"] == "paid"
    finally:
        bank.proc.stop()


def test_a_key_change_at_run_time_keeps_the_old_keys_until_retired() -> None:
    bank = start(*FAST, SANDBOX_EXTRA_SHOPS=json.dumps([TWO]))
    try:
        bad = bank.post(f"/sandbox/shops/{TWO['shop_no']}/keys", {**NEW, "b2": "xyz"})
        assert bad.status_code == 400
        assert "b2" in bad.text
        assert "xyz" not in bad.text
        assert bank.post("/sandbox/shops/NA0009_001/keys", NEW).status_code == 404
        changed = bank.post(f"/sandbox/shops/{TWO['shop_no']}/keys", NEW).json()
        assert changed["previous"] is not None
        with _client(bank.api, TWO, NEW) as old_active:  # still signing with the old keys
            assert create_card(old_active, "KEYS-1").shop_no == TWO["shop_no"]
        assert bank.post(f"/sandbox/shops/{TWO['shop_no']}/keys/retire").json()["previous"] is None
        with _client(bank.api, TWO) as old_only, pytest.raises(BankProtocolError):
            create_card(old_only, "KEYS-2")
        with _client(bank.api, NEW) as new_only:
            assert create_card(new_only, "KEYS-3").shop_no == TWO["shop_no"]
        listed = bank.get("/sandbox/shops").json()
        assert {s["shop_no"] for s in listed} == {SANDBOX_SHOP_NO, TWO["shop_no"]}
        secrets = [*NEW.values(), *(v for k, v in TWO.items() if k != "shop_no")]
        assert not [v for v in secrets if v in json.dumps(listed)]
    finally:
        bank.proc.stop()
