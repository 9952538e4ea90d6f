"""Scenario 8: after everything else ran, no secret appears in any process log, in Flower's task view
or in the errors stored in the database (and no process logged an unhandled error).

Every Stack of the session used the same random, non-default ShopNo, hash keys and X-KeyID (and its
own API token), so finding none of them means something. This module runs last (see conftest.py), so
the logs hold every scenario's traffic, including the failures, retries and protocol errors.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import requests

from tests.support.poll import wait_for
from tests.support.stack import ALL_LOGS, ShopKeys, Stack

pytestmark = pytest.mark.faults


def needles(stack: Stack, keys: ShopKeys) -> dict[str, str]:
    found = keys.needles()
    found["API token"] = stack.api_token
    found["Flower password"] = stack.flower_auth.split(":", 1)[1]
    found["checkout secret"] = stack.checkout_secret
    return found


def leaks(text: str, secrets: dict[str, str]) -> list[str]:
    return [name for name, value in secrets.items() if re.search(re.escape(value), text, re.IGNORECASE)]


@pytest.fixture(scope="module")
def traffic(stack: Stack) -> list[str]:
    """A last round of payments through a bank that fails sometimes, so Flower sees retries too."""
    orders = stack.create_orders(4, amount_twd=810)
    stack.set_faults(fail_next=3, fail_next_action="error", fail_next_status=503, services=["OrderPayQuery"])
    for order_no in orders:
        stack.pay(order_no)
    stack.wait_final(orders, timeout=45)
    stack.clear_faults()
    return orders


def flower_tasks(stack: Stack) -> dict[str, dict[str, object]]:
    user, password = stack.flower_auth.split(":", 1)
    resp = requests.get(f"{stack.flower_url}/api/tasks", auth=(user, password), timeout=10)
    resp.raise_for_status()
    return dict(resp.json())


def test_no_secret_in_any_process_log(stack: Stack, shop_keys: ShopKeys, traffic: list[str]) -> None:
    # Given the logs of every process every scenario started (sandbox, web, workers, beat, Flower)
    logs = {str(path): path.read_text(errors="replace") for path in ALL_LOGS if Path(path).exists()}
    kinds = {Path(p).name.split(".")[0].split("-")[0] for p in logs}
    assert {"sandbox", "web", "worker", "beat", "flower"} <= kinds, kinds
    # (they hold real content: the orders of this round are in the web's and the workers' logs)
    assert any(traffic[0] in text for path, text in logs.items() if "web" in Path(path).name)
    assert any(traffic[0] in text for path, text in logs.items() if "worker" in Path(path).name)

    # When they are searched for every secret value
    found = {path: leaks(text, needles(stack, shop_keys)) for path, text in logs.items()}

    # Then none is found
    assert {p: names for p, names in found.items() if names} == {}


def test_no_unhandled_error_in_any_log(stack: Stack, traffic: list[str]) -> None:
    # Given the logs of every process of every scenario (outages, crashes and garbage included)
    logs = {str(path): path.read_text(errors="replace") for path in ALL_LOGS if Path(path).exists()}

    # When they are searched for tracebacks and for requests that ended in a server error
    tracebacks = {p: excerpts(text, "Traceback (most recent call last)") for p, text in logs.items()}
    crashed = {p: excerpts(text, '"status": 500') for p, text in logs.items()}

    # Then there are none: every failure was expected, caught and logged as such (the failure shows
    # the log lines, so a run on another machine can be diagnosed from its output alone)
    assert {p: found for p, found in tracebacks.items() if found} == {}
    assert {p: found for p, found in crashed.items() if found} == {}


def excerpts(text: str, needle: str, limit: int = 3) -> list[str]:
    """The log lines that hold `needle`, with the line before each (which names the logger)."""
    lines = text.splitlines()
    hits = [i for i, line in enumerate(lines) if needle in line][:limit]
    return ["\n".join(lines[max(0, i - 1): i + 1])[-3000:] for i in hits]


def test_no_secret_in_flowers_task_view(stack: Stack, shop_keys: ShopKeys, traffic: list[str]) -> None:
    # Given Flower, logged in, showing the tasks of this run (retries included)
    def with_retries() -> dict[str, dict[str, object]] | None:
        tasks = flower_tasks(stack)
        return tasks if any(v.get("retries") for v in tasks.values()) else None

    tasks = wait_for(with_retries, timeout=20, message="Flower to show the resolve tasks and a retry")
    assert tasks is not None
    assert any(v.get("name") == "qpay.resolve_pay_token" for v in tasks.values())

    # When the whole task view is searched, and without the password Flower refuses
    text = json.dumps(tasks)
    anonymous = requests.get(f"{stack.flower_url}/api/tasks", timeout=10)

    # Then no secret is in it
    assert leaks(text, needles(stack, shop_keys)) == []
    assert anonymous.status_code == 401


def test_no_secret_in_stored_errors(stack: Stack, shop_keys: ShopKeys, traffic: list[str]) -> None:
    # Given every error and detail text the database keeps
    rows = stack._rows("SELECT last_error AS txt FROM pay_tokens UNION ALL SELECT error FROM bank_calls "
                       "UNION ALL SELECT detail FROM order_events UNION ALL SELECT status_reason FROM orders")
    text = "\n".join(r.txt for r in rows if r.txt)
    assert text  # the failing bank left errors behind

    # Then no secret is in them
    assert leaks(text, needles(stack, shop_keys)) == []


def test_no_secret_or_unbounded_value_in_the_metrics(stack: Stack, shop_keys: ShopKeys,
                                                     traffic: list[str]) -> None:
    # Given the web's /metrics after this run's payments, retries and every earlier scenario
    text = requests.get(f"{stack.web_url}/metrics", timeout=10).text
    assert "qpay_callbacks_total" in text

    # Then it holds no secret, no order number and no PayToken (labels take fixed values only)
    assert leaks(text, needles(stack, shop_keys)) == []
    for order_no in traffic:
        assert order_no not in text
        assert stack.pay_token_of(order_no)[:8] not in text
