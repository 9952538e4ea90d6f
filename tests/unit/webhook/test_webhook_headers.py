"""Headers every answer carries, and the pages' Content-Security-Policy (issue 13, item 7)."""

from __future__ import annotations

import pytest

from tests.unit.webhook.helpers import SHOP, TOKEN


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), [
    ("post", "/qpay/backend", {"json": {"ShopNo": SHOP, "PayToken": TOKEN}}, 200),
    ("post", "/qpay/backend", {"json": {"ShopNo": SHOP}}, 400),
    ("get", "/qpay/backend", {}, 405),
    ("post", "/qpay/return", {"data": {"ShopNo": SHOP, "PayToken": TOKEN}}, 303),
    ("get", f"/qpay/tokens/{TOKEN}/status", {}, 404),
    ("get", "/api/orders/A1", {}, 401),
    ("get", "/healthz", {}, 200),
    ("get", "/no/such/page", {}, 404),
])
def test_every_answer_says_nosniff(client, method, path, kwargs, status):
    resp = getattr(client, method)(path, **kwargs)
    assert resp.status_code == status
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("page", ["return page", "400 page"])
def test_the_pages_may_not_be_framed_rebased_or_post_elsewhere(client, page):
    # given the payment's return page and the 400 page
    if page == "return page":
        client.post("/qpay/return", data={"ShopNo": SHOP, "PayToken": TOKEN})
        resp = client.get(f"/qpay/return/{TOKEN}")
    else:
        resp = client.post("/qpay/return", data={"ShopNo": SHOP})
    assert resp.mimetype == "text/html"
    # then both carry the one policy, with the three directives that script-src does not cover
    policy = resp.headers["Content-Security-Policy"]
    directives = {d.strip().split(" ")[0]: d.strip() for d in policy.split(";")}
    assert directives["default-src"] == "default-src 'none'"
    assert directives["frame-ancestors"] == "frame-ancestors 'none'"
    assert directives["base-uri"] == "base-uri 'none'"
    assert directives["form-action"] == "form-action 'self'"
