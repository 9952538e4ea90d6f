"""Property: no body, however odd, makes the receiver crash (5xx) or store a row it should not."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.webhook.helpers import SHOP, count_tokens

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
# Objects that look like callbacks but are wrong in at least one way that matters.
bad_shop = st.text(max_size=25).filter(lambda s: s != SHOP) | json_scalars.filter(
    lambda v: not isinstance(v, str)
)


def _token_ok(s: str) -> bool:
    return 0 < len(s) <= 128 and all(c.isascii() and (c.isalnum() or c in "_-") for c in s)


bad_token = (
    st.text(max_size=140).filter(lambda s: not _token_ok(s))
    | st.integers() | st.none() | st.lists(st.text(max_size=3), max_size=2)
)
near_miss = st.one_of(
    st.fixed_dictionaries({"ShopNo": bad_shop, "PayToken": st.text(max_size=140)}),
    st.fixed_dictionaries({"ShopNo": st.just(SHOP), "PayToken": bad_token}),
    st.dictionaries(st.text(max_size=10), json_values, max_size=5),
)
bodies = st.one_of(
    st.binary(max_size=6000),
    json_values.map(lambda v: json.dumps(v).encode()),
    near_miss.map(lambda v: json.dumps(v).encode()),
    near_miss.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8")),
)
content_types = st.sampled_from([None, "application/json", "text/plain", "application/x-www-form-urlencoded",
                                 "multipart/form-data; boundary=x", "application/json; charset=latin-1"])

# One app and database for all examples of a test, on purpose: rows would accumulate if any were stored.
SHARED = [HealthCheck.function_scoped_fixture]


@settings(max_examples=300, deadline=None, suppress_health_check=SHARED)
@given(body=bodies, content_type=content_types, path=st.sampled_from(["/qpay/backend", "/qpay/return"]))
def test_random_bodies_never_5xx_and_never_store(client, db_url, enqueuer, body, content_type, path):
    headers = {"Content-Type": content_type} if content_type else {}
    resp = client.post(path, data=body, headers=headers)
    assert resp.status_code < 500, resp.get_data(as_text=True)[:300]
    assert resp.status_code in (400, 413)
    assert count_tokens(db_url) == 0
    assert enqueuer.sent == []


@settings(max_examples=60, deadline=None, suppress_health_check=SHARED)
@given(token=st.text(alphabet="abcdefABCDEF0123456789", min_size=1, max_size=128),
       extra=st.dictionaries(st.text(max_size=8).filter(lambda k: k not in ("ShopNo", "PayToken")),
                             json_values, max_size=3))
def test_any_valid_callback_is_acknowledged_and_stored_once(client, db_url, token, extra):
    before = count_tokens(db_url)
    resp = client.post("/qpay/backend", data=json.dumps({**extra, "ShopNo": SHOP, "PayToken": token}))
    assert resp.data == b'{"Status":"S"}'
    assert count_tokens(db_url) in (before, before + 1)
