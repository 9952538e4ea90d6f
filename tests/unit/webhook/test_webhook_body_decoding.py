"""The receiver's body reading and decoding shortcuts answer what the plain library calls answer."""

from __future__ import annotations

import io
import json

from flask import Flask
from hypothesis import given
from hypothesis import strategies as st

from webhook.bodies import read_capped
from webhook.validation import InvalidInput, decode_json_object

BOM = b"\xef\xbb\xbf"


def decoded_the_long_way(raw: bytes) -> object:
    """What decode_json_object answered with the utf-8-sig codec and json.loads."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return "not UTF-8"
    if not text.strip():
        return "empty"
    try:
        value = json.loads(text, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
    except (ValueError, RecursionError):
        return "not JSON"
    return value if isinstance(value, dict) else "not an object"


def decoded(raw: bytes) -> object:
    try:
        return decode_json_object(raw)
    except InvalidInput as exc:
        return {"body is not valid UTF-8": "not UTF-8", "body is not valid JSON": "not JSON",
                "body must be a JSON object": "not an object"}.get(exc.error, "empty")


@given(st.one_of(st.binary(max_size=200), st.text(max_size=60).map(str.encode),
                 st.dictionaries(st.text(max_size=8), st.integers()).map(lambda d: json.dumps(d).encode())))
def test_decoding_answers_what_the_codec_and_json_loads_answer(raw):
    for body in (raw, BOM + raw, BOM + BOM + raw, BOM[:2] + raw):
        assert decoded(body) == decoded_the_long_way(body)


def test_nan_and_infinity_are_not_json():
    for word in (b"NaN", b"Infinity", b"-Infinity"):
        assert decoded(b'{"a": ' + word + b"}") == "not JSON"


class CountingStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads = 0

    def read(self, size: int | None = -1) -> bytes:
        self.reads += 1
        return super().read(size)


def test_a_declared_length_is_read_in_one_call_and_an_undeclared_one_to_its_end():
    app = Flask(__name__)
    body = b'{"ShopNo":"NA0001_001","PayToken":"abc"}'
    for declared in (str(len(body)), None):
        stream = CountingStream(body)
        environ = {"REQUEST_METHOD": "POST", "wsgi.input": stream, "wsgi.input_terminated": declared is None}
        if declared is not None:
            environ["CONTENT_LENGTH"] = declared
        with app.test_request_context("/", environ_overrides=environ):
            assert read_capped(4096) == body
        assert stream.reads == (1 if declared is not None else 2)
