"""QPAY_CALLBACK_ALLOW: /qpay/backend answers only the bank's addresses; X-Forwarded-For counts only as
far as gunicorn's FORWARDED_ALLOW_IPS trusts."""

from __future__ import annotations

import dataclasses
import ipaddress
import json

import pytest
from flask import Flask

from core.env import ip_networks
from tests.unit.webhook.helpers import SHOP, TOKEN, FakeEnqueuer, count_tokens
from webhook.clientip import client_address

BODY = json.dumps({"ShopNo": SHOP, "PayToken": TOKEN})
BANK = "203.0.113.0/24"


def _restrict(app: Flask, allow: str, proxies: str | None = "127.0.0.1") -> None:
    deps = app.extensions["qpay"]
    forwarded = None if proxies is None else ip_networks({"X": proxies}, "X")
    deps.settings = dataclasses.replace(deps.settings, callback_allow=ip_networks({"X": allow}, "X"),
                                        forwarded_allow=forwarded)


def _post(app: Flask, remote: str, forwarded: str | None = None):  # type: ignore[no-untyped-def]
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return app.test_client().post("/qpay/backend", data=BODY, content_type="application/json",
                                  headers=headers, environ_base={"REMOTE_ADDR": remote})


def test_a_stranger_is_refused_and_nothing_is_recorded(
    app: Flask, db_url: str, enqueuer: FakeEnqueuer
) -> None:
    _restrict(app, BANK)
    resp = _post(app, "198.51.100.7")
    assert (resp.status_code, resp.get_json()) == (403, {"Status": "F", "error": "forbidden"})
    assert (count_tokens(db_url), enqueuer.sent) == (0, [])


def test_the_bank_is_answered(app: Flask, db_url: str) -> None:
    _restrict(app, BANK)
    assert _post(app, "203.0.113.9").data == b'{"Status":"S"}'
    assert count_tokens(db_url) == 1


def test_behind_our_proxy_the_forwarded_client_counts(app: Flask, db_url: str) -> None:
    _restrict(app, BANK, proxies="127.0.0.1")
    assert _post(app, "127.0.0.1", forwarded="203.0.113.9").status_code == 200
    # a forged first hop before the real one does not help a stranger
    assert _post(app, "127.0.0.1", forwarded="203.0.113.9, 198.51.100.7").status_code == 403


def test_a_stranger_writing_x_forwarded_for_itself_is_still_refused(app: Flask) -> None:
    _restrict(app, BANK, proxies="127.0.0.1")
    assert _post(app, "198.51.100.7", forwarded="203.0.113.9").status_code == 403


def test_no_allow_list_means_open(app: Flask) -> None:
    assert _post(app, "198.51.100.7").status_code == 200


@pytest.mark.parametrize(("remote", "xff", "proxies", "expected"), [
    ("10.0.0.1", None, "10.0.0.0/8", "10.0.0.1"),
    ("10.0.0.1", "1.2.3.4, 10.0.0.2", "10.0.0.0/8", "1.2.3.4"),  # two hops of ours
    ("10.0.0.1", "6.6.6.6, 1.2.3.4", "10.0.0.0/8", "1.2.3.4"),  # 6.6.6.6 was written by 1.2.3.4's caller
    ("10.0.0.1", "1.2.3.4, 5.6.7.8", None, "5.6.7.8"),  # '*': only the peer's own hop
    ("10.0.0.1", "junk", "10.0.0.0/8", None),
])
def test_client_address_walks_forwarded_for_from_the_right(
    remote: str, xff: str | None, proxies: str | None, expected: str | None
) -> None:
    trusted = None if proxies is None else ip_networks({"X": proxies}, "X")
    found = client_address(remote, xff, trusted)
    assert found == (ipaddress.ip_address(expected) if expected else None)
