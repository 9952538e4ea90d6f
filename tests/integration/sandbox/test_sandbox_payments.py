"""Customers paying, the card and ATM pages, ATM autopay, and the BackendURL resend policy."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
import requests

from core.settings import load_settings
from core.sinopac.client import QPayClient
from tests.integration.sandbox.conftest import FAST, Receiver, Sandbox, create_atm, create_card, start
from tests.support.poll import wait_for

pytestmark = pytest.mark.integration


class Forms(HTMLParser):
    """The forms of a page: action and hidden fields."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, object]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form":
            self.forms.append({"action": values.get("action"), "method": values.get("method"), "fields": {}})
        elif tag == "input" and self.forms:
            fields = self.forms[-1]["fields"]
            assert isinstance(fields, dict)
            fields[values.get("name")] = values.get("value")


def forms(html: str) -> list[dict[str, object]]:
    parser = Forms()
    parser.feed(html)
    return parser.forms


def test_a_payment_creates_a_pay_token_and_notifies_the_backend_url(
    client: QPayClient, sandbox: Sandbox, receiver: Receiver
) -> None:
    create_atm(client, "PAY-1", backend_url=receiver.url)

    paid = sandbox.pay("PAY-1")
    payment = sandbox.wait_callback("PAY-1", "delivered")

    assert re.fullmatch(r"[0-9a-f]{64}", paid["PayToken"])
    assert paid["PayStatus"] == "1A400"
    assert receiver.received == [{"ShopNo": "NA0001_001", "PayToken": paid["PayToken"]}]
    attempts = [(a["number"], a["http_status"], a["acknowledged"]) for a in payment["attempts"]]
    assert attempts == [(1, 200, True)]


def test_a_receiver_failing_twice_then_answering_s_gets_exactly_three_sends(
    client: QPayClient, sandbox: Sandbox, receiver: Receiver
) -> None:
    receiver.replies = [(500, "oops"), (200, '{"Status":"F"}'), (200, '{"Status":"S"}')]
    create_atm(client, "RESEND-3", backend_url=receiver.url)

    sandbox.pay("RESEND-3")
    payment = sandbox.wait_callback("RESEND-3", "delivered")

    assert receiver.count() == 3
    assert [(a["http_status"], a["acknowledged"]) for a in payment["attempts"]] == [
        (500, False), (200, False), (200, True)]


def test_a_receiver_that_never_answers_s_gets_exactly_five_sends(
    client: QPayClient, sandbox: Sandbox, receiver: Receiver
) -> None:
    receiver.replies = [(503, "busy")]
    create_atm(client, "RESEND-5", backend_url=receiver.url)

    sandbox.pay("RESEND-5")
    payment = sandbox.wait_callback("RESEND-5", "failed")

    assert receiver.count() == 5
    assert [a["number"] for a in payment["attempts"]] == [1, 2, 3, 4, 5]


def test_an_unreachable_backend_url_is_tried_five_times(client: QPayClient, sandbox: Sandbox) -> None:
    create_card(client, "DOWN-1", backend_url="http://127.0.0.1:9/backend")

    sandbox.pay("DOWN-1")
    payment = sandbox.wait_callback("DOWN-1", "failed")

    assert len(payment["attempts"]) == 5
    assert {a["error"] for a in payment["attempts"]} == {"ConnectionError"}


def test_an_order_without_backend_url_is_paid_without_callback(client: QPayClient, sandbox: Sandbox) -> None:
    create_atm(client, "NOCB-1", backend_url="")

    sandbox.pay("NOCB-1")

    assert sandbox.payment("NOCB-1")["callback"] == "none"


def test_card_payment_answers_with_the_return_form(client: QPayClient, sandbox: Sandbox) -> None:
    create_card(client, "CARD-RET")

    paid = sandbox.pay("CARD-RET")

    assert paid["return"] == {"url": "http://127.0.0.1:9/return",
                              "form": {"ShopNo": "NA0001_001", "PayToken": paid["PayToken"]}}


def test_card_page_pay_button_pays_and_auto_posts_to_return_url(
    client: QPayClient, sandbox: Sandbox, receiver: Receiver
) -> None:
    url = create_card(client, "PAGE-1", backend_url=receiver.url).card_pay_url
    page = requests.get(url, timeout=10)
    (form,) = forms(page.text)
    action = requests.compat.urljoin(url, str(form["action"]))

    answer = requests.post(action, data={"outcome": "paid"}, timeout=10)

    (back,) = forms(answer.text)
    token = sandbox.payment("PAGE-1")["PayToken"]
    assert "Decline" in page.text
    assert (back["action"], back["method"]) == ("http://127.0.0.1:9/return", "post")
    assert back["fields"] == {"ShopNo": "NA0001_001", "PayToken": token}
    assert ".submit()" in answer.text
    assert sandbox.order("PAGE-1")["PayStatus"] == "1C400"
    wait_for(lambda: receiver.count() == 1, timeout=10, message="the card payment callback")


def test_card_page_decline_button_declines_the_order(client: QPayClient, sandbox: Sandbox) -> None:
    url = create_card(client, "PAGE-2").card_pay_url

    requests.post(url, data={"outcome": "failed"}, timeout=10)

    view = sandbox.order("PAGE-2")
    assert view["PayStatus"] == "1C500"
    assert view["payments"][0]["succeeded"] is False


def test_a_payment_link_with_a_wrong_key_is_not_found(client: QPayClient) -> None:
    url = create_card(client, "PAGE-3").card_pay_url
    assert url is not None
    forged = re.sub(r"TK=[0-9a-f]+", "TK=" + "0" * 32, url)

    assert requests.get(forged, timeout=10).status_code == 404
    assert requests.post(forged, data={"outcome": "paid"}, timeout=10).status_code == 404


def test_atm_web_page_pays_the_order(client: QPayClient, sandbox: Sandbox) -> None:
    url = create_atm(client, "ATMPAGE-1").web_atm_url

    page = requests.get(url, timeout=10)
    answer = requests.post(url, data={"outcome": "paid"}, timeout=10)

    assert "99922" in page.text
    assert answer.status_code == 200
    assert sandbox.order("ATMPAGE-1")["PayStatus"] == "1A400"


def test_paying_twice_is_refused(client: QPayClient, sandbox: Sandbox) -> None:
    create_atm(client, "TWICE-1")
    sandbox.pay("TWICE-1")

    again = sandbox.post("/sandbox/orders/TWICE-1/pay", {"outcome": "paid"})

    assert again.status_code == 409
    assert "already paid" in again.json()["error"]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/sandbox/orders/NOPE/pay", {"outcome": "paid"}, 404),
        ("/sandbox/orders/BADPAY-1/pay", {"outcome": "maybe"}, 400),
        ("/sandbox/orders/BADPAY-1/pay", {"outcome": "failed"}, 409),  # ATM transfers are not declined
    ],
)
def test_bad_pay_requests_get_a_clear_error(
    client: QPayClient, sandbox: Sandbox, path: str, body: dict[str, str], status: int
) -> None:
    create_atm(client, "BADPAY-1")

    response = sandbox.post(path, body)

    assert response.status_code == status
    assert response.json()["error"]


def test_an_expired_order_cannot_be_paid(client: QPayClient, sandbox: Sandbox) -> None:
    create_atm(client, "EXP-1")
    expired = sandbox.post("/sandbox/orders/EXP-1/expire")

    pay = sandbox.post("/sandbox/orders/EXP-1/pay", {"outcome": "paid"})

    assert expired.json()["PayStatus"] == "1A600"
    assert pay.status_code == 409


def test_atm_orders_are_paid_automatically_unless_the_order_no_ends_in_9(receiver: Receiver) -> None:
    bank = start(*FAST, "--atm-autopay-seconds", "0.2")
    try:
        with QPayClient(load_settings({"QPAY_API_BASE_URL": bank.api})) as client:
            create_atm(client, "AUTO-9", backend_url=receiver.url)
            create_card(client, "AUTO-C1", backend_url=receiver.url)
            create_atm(client, "AUTO-1", backend_url=receiver.url)
        wait_for(lambda: bank.order("AUTO-1")["PayStatus"] == "1A400", timeout=10, message="autopay")
        wait_for(lambda: receiver.count() == 1, timeout=10, message="the autopay callback")
        # Timers run in due order: had the other two been scheduled, they would have been paid first.
        statuses = (bank.order("AUTO-9")["PayStatus"], bank.order("AUTO-C1")["PayStatus"])
    finally:
        bank.proc.stop()

    assert statuses == ("1A200", "1C200")
    assert receiver.count() == 1


def test_order_view_of_an_unknown_order_is_404(sandbox: Sandbox) -> None:
    assert sandbox.get("/sandbox/orders/NOPE").status_code == 404


def test_payment_pages_quote_odd_order_numbers(client: QPayClient, sandbox: Sandbox) -> None:
    result = create_card(client, "A/B?C#1")

    assert result.card_pay_url is not None
    assert urlsplit(result.card_pay_url).path == "/sandbox/card/A%2FB%3FC%231"
    assert requests.get(result.card_pay_url, timeout=10).status_code == 200
    assert sandbox.get("/sandbox/orders/A%2FB%3FC%231").json()["OrderNo"] == "A/B?C#1"
