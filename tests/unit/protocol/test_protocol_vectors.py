"""Every known-answer vector in tests/data/vectors.json, reproduced by core.sinopac.crypto."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.sinopac import crypto, envelope
from core.sinopac.errors import SignatureMismatch, UndecryptableReply

_VECTORS = json.loads((Path(__file__).resolve().parents[2] / "data" / "vectors.json").read_text("utf-8"))
GEN = _VECTORS["generated"]
KEYS = GEN["inputs"]["keys"]
REQUESTS = sorted(GEN["requests"])
RESPONSES = sorted(GEN["responses"])
PUBLISHED = _VECTORS["published"]


def _published(kind: str) -> list[Any]:
    return [pytest.param(v, id=f"published[{i}]") for i, v in enumerate(PUBLISHED) if v["kind"] == kind]


def test_generated_hash_id_keeps_leading_zeros_and_uppercase() -> None:
    # given the generated keys, whose XOR starts with 0x01 and whose second half starts with 0x00
    # when the HashID is derived
    result = crypto.hash_id(KEYS["A1"], KEYS["A2"], KEYS["B1"], KEYS["B2"])
    # then it is the vector, two uppercase digits per byte
    assert result == GEN["HashID"] == "01985FC9BB8D479E009351571113515F"


@pytest.mark.parametrize("vector", _published("HashID"))
def test_published_hash_id(vector: dict[str, Any]) -> None:
    assert crypto.hash_id(vector["A1"], vector["A2"], vector["B1"], vector["B2"]) == vector["HashID"]


def test_hash_id_ignores_key_letter_case() -> None:
    lower = {k: v.lower() for k, v in KEYS.items()}
    assert crypto.hash_id(lower["A1"], lower["A2"], lower["B1"], lower["B2"]) == GEN["HashID"]


def test_generated_iv_for_request_and_response_nonces() -> None:
    nonces = GEN["inputs"]
    assert crypto.iv_from_nonce(nonces["nonce_request"]) == GEN["IV_request"]
    assert crypto.iv_from_nonce(nonces["nonce_response"]) == GEN["IV_response"]
    assert GEN["sha256_hex_of_nonce_request"].endswith(GEN["IV_request"])


@pytest.mark.parametrize("vector", _published("IV") + _published("request") + _published("response"))
def test_published_iv(vector: dict[str, Any]) -> None:
    nonce = vector.get("Nonce") or vector["response_Nonce"]
    assert crypto.iv_from_nonce(nonce) == vector["IV"]


@pytest.mark.parametrize("name", REQUESTS)
def test_generated_request_sign_string_and_sign(name: str) -> None:
    vector = GEN["requests"][name]
    message = vector["message_object"]
    assert crypto.sign_string(message) == vector["sign_string"]
    assert crypto.sign(message, GEN["inputs"]["nonce_request"], GEN["HashID"]) == vector["Sign"]


@pytest.mark.parametrize("name", REQUESTS)
def test_generated_request_compact_plaintext_and_message(name: str) -> None:
    vector = GEN["requests"][name]
    message = vector["message_object"]
    assert crypto.compact_json(message) == vector["plaintext_compact_utf8"]
    assert crypto.encrypt_message(message, GEN["HashID"], GEN["inputs"]["nonce_request"]) == vector["Message"]


@pytest.mark.parametrize("name", REQUESTS)
def test_generated_request_envelope_is_sealed_exactly(name: str) -> None:
    vector = GEN["requests"][name]
    sealed = envelope.seal_request(
        vector["APIService"],
        vector["message_object"],
        shop_no="NA0001_001",
        nonce=GEN["inputs"]["nonce_request"],
        hash_id=GEN["HashID"],
    )
    assert sealed == vector["envelope"]


@pytest.mark.parametrize("name", REQUESTS)
def test_generated_php_escaped_alt_message_decrypts_to_the_same_object(name: str) -> None:
    # given the ciphertext PHP json_encode would produce (\uXXXX, \/ escapes)
    vector = GEN["requests"][name]
    nonce = GEN["inputs"]["nonce_request"]
    # when it is decrypted
    decrypted = crypto.decrypt_message(vector["alt_Message_php_json_encode_default"], GEN["HashID"], nonce)
    # then it is the same object, so its Sign verifies too
    assert decrypted == json.loads(vector["alt_plaintext_php_json_encode_default"])
    assert crypto.verify_sign(decrypted, nonce, GEN["HashID"], vector["Sign"])


@pytest.mark.parametrize("name", RESPONSES)
def test_generated_response_decrypts_with_response_nonce_and_sign_verifies(name: str) -> None:
    vector = GEN["responses"][name]
    reply = vector["envelope"]
    inner = envelope.open_reply(reply["APIService"], reply, hash_id=GEN["HashID"])
    assert inner == vector["message_object"]
    assert crypto.verify_sign(inner, reply["Nonce"], GEN["HashID"], vector["Sign"])
    assert crypto.compact_json(inner) == vector["plaintext_compact_utf8"]
    assert crypto.sign_string(inner) == vector["sign_string"]


@pytest.mark.parametrize("vector", _published("request"))
def test_published_request_sign_and_message(vector: dict[str, Any]) -> None:
    message = vector.get("message_object") or vector["message_object_for_sign"]
    assert crypto.sign_string(message) == vector["sign_string"]
    assert crypto.sign(message, vector["Nonce"], vector["HashID"]) == vector["Sign"]
    if "Message" in vector:
        assert crypto.compact_json(message) == vector["plaintext"]
        assert crypto.encrypt_message(message, vector["HashID"], vector["Nonce"]) == vector["Message"]


@pytest.mark.parametrize("vector", _published("request"))
def test_published_request_ciphertexts_decrypt(vector: dict[str, Any]) -> None:
    pairs = [
        (k, k.replace("Message", "plaintext") + "_decrypted") for k in vector if k.startswith("Message_")
    ]
    pairs = [(m, p) for m, p in pairs if p in vector] or [("Message", "plaintext")]
    for message_key, plaintext_key in pairs:
        decrypted = crypto.decrypt_message(vector[message_key], vector["HashID"], vector["Nonce"])
        assert decrypted == json.loads(vector[plaintext_key])
        assert crypto.verify_sign(decrypted, vector["Nonce"], vector["HashID"], vector["Sign"])


@pytest.mark.parametrize("vector", _published("response"))
def test_published_real_sandbox_response_decrypts_and_server_sign_verifies(vector: dict[str, Any]) -> None:
    reply = {
        "Version": "1.0.0",
        "APIService": "OrderCreate",
        "Nonce": vector["response_Nonce"],
        "Sign": vector["Sign_from_server"],
        "Message": vector["Message"],
    }
    inner = envelope.open_reply("OrderCreate", reply, hash_id=vector["HashID"])
    assert inner == json.loads(vector["plaintext"])
    assert crypto.verify_sign(inner, vector["response_Nonce"], vector["HashID"], vector["Sign_from_server"])
    assert crypto.sign_string(inner) == vector["sign_string"]
    assert "–" in inner["Description"]  # the en dash survived UTF-8 both ways


@pytest.mark.parametrize("vector", _published("Sign"))
def test_published_sign_walkthrough(vector: dict[str, Any]) -> None:
    message = vector["message_object"]
    assert crypto.sign_string(message) == vector["sign_string"]
    assert crypto.sign(message, vector["Nonce"], vector["HashID"]) == vector["Sign"]


def test_edge_case_sign_string_follows_the_official_dotnet_rule() -> None:
    # given null, "", whitespace-only and "0" values, and a value full of & = + %
    edge = GEN["edge_case_sign_string"]
    # then null, "" and " " are dropped, "0" is kept and nothing is escaped
    assert crypto.sign_string(edge["message_object"]) == edge["official_dotnet_rule_expected"]


def test_verify_sign_accepts_lowercase_hex_of_the_same_sign() -> None:
    vector = GEN["requests"]["OrderPayQuery"]
    nonce = GEN["inputs"]["nonce_request"]
    assert crypto.verify_sign(vector["message_object"], nonce, GEN["HashID"], vector["Sign"].lower())


@pytest.mark.parametrize("name", RESPONSES)
def test_generated_response_with_a_changed_sign_is_refused(name: str) -> None:
    reply = dict(GEN["responses"][name]["envelope"])
    reply["Sign"] = reply["Sign"][:-1] + ("0" if reply["Sign"][-1] != "0" else "1")
    with pytest.raises(SignatureMismatch):
        envelope.open_reply(reply["APIService"], reply, hash_id=GEN["HashID"])


@pytest.mark.parametrize("name", RESPONSES)
def test_generated_response_opened_with_the_request_nonce_is_refused(name: str) -> None:
    reply = {**GEN["responses"][name]["envelope"], "Nonce": GEN["inputs"]["nonce_request"]}
    with pytest.raises(UndecryptableReply):
        envelope.open_reply(reply["APIService"], reply, hash_id=GEN["HashID"])
