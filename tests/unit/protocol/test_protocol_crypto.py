"""Crypto round trips (property-based) and the ways decryption must fail loudly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.sinopac import crypto

HASH_ID = "01985FC9BB8D479E009351571113515F"
NONCE = "NjM4NDAwMDAwMDAwMDEuNTphMzk4NGZlOGNmMjA4OTMwYTFkZGY4ZWIwMzk4Yjg3MWI1NmE0MjA4ZTY2NDU0MzBhYjAy"
OTHER_NONCE = "NjM4NDAwMDAwMDAwMDIuNzpmY2I2NDUzMjQ3MjhiODNjN2I4NTU2NDFmMmI5YzZlMDgzYTQzNjQ0ZTMxMTBjYmI2"

# Text the bank really sends: CJK, full-width punctuation, the en dash of "S0000 – 處理成功", URLs.
_text = st.text(
    alphabet=st.one_of(
        st.sampled_from("處理成功訂單虛擬帳號測試商品－：，「」–—&=+%/\\\"' "),
        st.characters(codec="utf-8", exclude_categories=["Cs"]),
    ),
    max_size=40,
)
_scalar = st.one_of(_text, st.integers(min_value=-(10**12), max_value=10**12))
_key = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=12
)
_message = st.dictionaries(
    _key,
    st.one_of(_scalar, st.dictionaries(_key, _scalar, max_size=3), st.lists(_scalar, max_size=3)),
    max_size=8,
)
_nonce = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=.:", min_size=1, max_size=120
)


@settings(max_examples=150, deadline=None)
@given(message=_message, nonce=_nonce)
def test_encrypt_then_decrypt_returns_the_same_message(message: dict, nonce: str) -> None:
    ciphertext = crypto.encrypt_message(message, HASH_ID, nonce)
    assert ciphertext == ciphertext.upper()
    assert len(ciphertext) % 32 == 0
    assert crypto.decrypt_message(ciphertext, HASH_ID, nonce) == message


@settings(max_examples=150, deadline=None)
@given(message=_message, nonce=_nonce)
def test_sign_verifies_for_the_signed_message_and_nonce_only(message: dict, nonce: str) -> None:
    value = crypto.sign(message, nonce, HASH_ID)
    assert crypto.verify_sign(message, nonce, HASH_ID, value)
    assert not crypto.verify_sign(message, nonce + "x", HASH_ID, value)
    assert not crypto.verify_sign({**message, "ZZ-Extra": "1"}, nonce, HASH_ID, value)


def test_en_dash_and_chinese_are_signed_as_raw_utf8() -> None:
    message = {"Description": "S0000 – 處理成功", "Status": "S"}
    assert crypto.sign_string(message) == "Description=S0000 – 處理成功&Status=S"
    assert "\\u" not in crypto.compact_json(message)


@pytest.mark.parametrize("bad_key", ["0A2A9C1D5E7B408", "0A2A9C1D5E7B40860", "0A2A9C1D5E7B40ZZ", ""])
def test_hash_key_of_wrong_length_or_not_hex_is_rejected_without_echoing_it(bad_key: str) -> None:
    with pytest.raises(crypto.CryptoError, match="hash key A1 must be 16 hexadecimal") as info:
        crypto.hash_id(bad_key, "0BB2C3D4E5F60718", "9E8D7C6B5A493827", "9E1E2D3C4B5A6978")
    if bad_key:
        assert bad_key not in str(info.value)


def test_hash_id_of_wrong_length_cannot_encrypt() -> None:
    with pytest.raises(crypto.CryptoError, match="HashID must be 32 characters"):
        crypto.encrypt_message({"A": 1}, HASH_ID[:16], NONCE)


@pytest.mark.parametrize("message_hex", ["XYZ0", "4BF8C96105788F4C1E1D2757E2B23CB4G0", "not hex at all"])
def test_non_hex_message_is_rejected(message_hex: str) -> None:
    with pytest.raises(crypto.CryptoError, match="not hexadecimal"):
        crypto.decrypt_message(message_hex, HASH_ID, NONCE)


@pytest.mark.parametrize("message_hex", ["", "4BF8C96105788F4C"])
def test_message_that_is_not_whole_blocks_is_rejected(message_hex: str) -> None:
    with pytest.raises(crypto.CryptoError, match="whole number of AES blocks"):
        crypto.decrypt_message(message_hex, HASH_ID, NONCE)


def test_message_decrypted_with_the_wrong_nonce_is_rejected() -> None:
    # given a reply encrypted under one nonce
    ciphertext = crypto.encrypt_message({"Status": "S", "Description": "S0000 – 處理成功"}, HASH_ID, NONCE)
    # when it is decrypted with another nonce, then it fails instead of returning garbage
    with pytest.raises(crypto.CryptoError, match="does not decrypt"):
        crypto.decrypt_message(ciphertext, HASH_ID, OTHER_NONCE)


def test_message_decrypted_with_the_wrong_key_is_rejected() -> None:
    ciphertext = crypto.encrypt_message({"Status": "S"}, HASH_ID, NONCE)
    with pytest.raises(crypto.CryptoError, match="does not decrypt"):
        crypto.decrypt_message(ciphertext, "87282A2FA0E209EBE1B3713AB56A06C2", NONCE)


def test_message_that_decrypts_to_a_json_array_is_rejected() -> None:
    from Crypto.Cipher import AES
    from Crypto.Util.Padding import pad

    iv = crypto.iv_from_nonce(NONCE).encode()
    ciphertext = AES.new(HASH_ID.encode(), AES.MODE_CBC, iv=iv).encrypt(pad(b"[1,2]", 16)).hex().upper()
    with pytest.raises(crypto.CryptoError, match="not decrypt to a JSON object"):
        crypto.decrypt_message(ciphertext, HASH_ID, NONCE)


def test_verify_sign_rejects_a_non_string_sign() -> None:
    assert not crypto.verify_sign({"A": "1"}, NONCE, HASH_ID, None)  # type: ignore[arg-type]
