"""The customer's journeys in a real Chromium, against the real app, worker and sandbox bank.

Each journey saves a screenshot in var/screenshots/ for a person to look at.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import SHOP_NAME, SHOP_RETURN_DELAY
from tests.support.browser import screenshot_path
from tests.support.stack import Stack
from webhook.texts import account_groups

pytestmark = pytest.mark.integration

SETTLE = 40_000  # ms: a payment's way from the bank through the worker to the page, on a busy machine
# The slow bank: every OrderPayQuery takes 1.5 s and the first two fail, so resolution takes seconds.
SLOW_BANK = {"latency_ms": 1500, "services": ["OrderPayQuery"], "fail_next": 2, "fail_next_status": 503}


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(locale="zh-TW", extra_http_headers={"Accept-Language": "zh-TW,zh;q=0.9"})
    yield ctx
    ctx.close()


@pytest.fixture
def slow_bank(stack: Stack) -> Iterator[None]:
    stack.set_faults(**SLOW_BANK)
    yield
    stack.clear_faults()


def new_order(stack: Stack, pay_type: str, amount: int = 1234,
              product: str = "阿里山烏龍茶 300g") -> dict[str, Any]:
    body = stack.create_order_body(amount, pay_type, product)
    assert body["checkout_url"], body
    return body


def shot(page: Page, name: str, *, whole_page: bool = False) -> None:
    """The page's content column (readable when shown small), or the whole page as the phone shows it."""
    if whole_page:
        page.screenshot(path=str(screenshot_path(name)), full_page=True)
    else:
        page.locator(".wrap").screenshot(path=str(screenshot_path(name)))


def mark_document(page: Page) -> None:
    """A flag that only survives while the same document stays open (a reload would lose it)."""
    page.evaluate("window.__sameDocument = true")


def same_document(page: Page) -> bool:
    return bool(page.evaluate("window.__sameDocument === true"))


def pay_by_card(page: Page, order: dict[str, Any], button: str = "Pay") -> None:
    """Checkout page -> the bank's card page -> Pay or Decline -> back to our return page."""
    page.goto(order["checkout_url"])
    expect(page.locator("#status")).to_have_text("待付款")
    page.locator("#pay-card").click()
    page.wait_for_url(re.compile(r"/sandbox/card/"))
    page.get_by_role("button", name=button, exact=True).click()
    page.wait_for_url(re.compile(r"/qpay/return/[0-9a-f]+"))


def test_card_payment_returns_to_a_chinese_result_page_and_then_to_the_shop(stack, context, shop_url):
    order = new_order(stack, "C")
    page = context.new_page()
    page.goto(order["checkout_url"])
    expect(page.locator("#shop-name")).to_have_text(SHOP_NAME)
    expect(page.locator("#amount")).to_have_text("NT$1,234")
    expect(page.locator("#order-no")).to_have_text(order["order_no"])
    expect(page.locator("#pay-card")).to_have_text("前往信用卡付款")
    shot(page, "checkout-card")
    pay_by_card(page, order)
    expect(page.locator("#status")).to_have_text("付款成功", timeout=SETTLE)
    expect(page.locator("#order-no")).to_have_text(order["order_no"])
    expect(page.locator("#amount")).to_have_text("NT$1,234")
    expect(page.locator("#back")).to_have_text("返回商店")
    assert page.locator("html").get_attribute("lang") == "zh-TW"
    shot(page, "return-card-paid")
    page.wait_for_url(f"{shop_url}/orders/{order['order_no']}", timeout=(SHOP_RETURN_DELAY + 10) * 1000)
    expect(page.locator("#shop-order")).to_contain_text(order["order_no"])
    assert stack.status(order["order_no"]) == "paid"


def test_declined_card_shows_payment_failed(stack, context):
    order = new_order(stack, "C", 880)
    page = context.new_page()
    pay_by_card(page, order, button="Decline")
    expect(page.locator("#status")).to_have_text("付款失敗", timeout=SETTLE)
    expect(page.locator("#order-no")).to_have_text(order["order_no"])
    shot(page, "return-card-declined")
    assert stack.status(order["order_no"]) == "failed"


def test_slow_bank_shows_confirming_then_paid_without_a_reload(stack, context, slow_bank):
    order = new_order(stack, "C", 2500)
    page = context.new_page()
    pay_by_card(page, order)
    expect(page.locator("#status")).to_have_text("確認中")
    mark_document(page)
    shot(page, "return-card-confirming")
    expect(page.locator("#status")).to_have_text("付款成功", timeout=SETTLE)
    assert same_document(page), "the page reloaded instead of updating in place"
    expect(page.locator("#order-no")).to_have_text(order["order_no"])
    expect(page.locator("#amount")).to_have_text("NT$2,500")


def test_atm_checkout_shows_the_account_and_turns_paid_when_the_transfer_arrives(stack, context):
    order = new_order(stack, "A", 3600, "禮盒")
    page = context.new_page()
    page.goto(order["checkout_url"])
    expect(page.locator("#bank-code")).to_have_text("807（永豐銀行）")
    expect(page.locator("#account")).to_have_text(account_groups(order["atm_pay_no"]))
    expect(page.locator("#deadline")).to_have_text(re.compile(r"^\d{4}/\d\d/\d\d 23:59（台北時間）$"))
    copy = page.locator("[data-copy]")
    expect(copy).to_be_visible()  # shown only where the script runs
    shot(page, "checkout-atm")
    copy.click()
    expect(copy).to_have_text("已複製")
    mark_document(page)
    stack.pay(order["order_no"])  # the customer transfers; the bank pushes the callback
    expect(page.locator("#status")).to_have_text("付款成功", timeout=SETTLE)
    assert same_document(page), "the page reloaded instead of updating in place"
    expect(page.locator("#account")).to_have_count(0)  # the instructions give way to the outcome
    expect(page.locator("#back")).to_be_visible()
    shot(page, "checkout-atm-paid")


def test_without_javascript_the_meta_refresh_reaches_the_outcome_and_the_shop(stack, browser, shop_url,
                                                                              slow_bank):
    ctx = browser.new_context(java_script_enabled=False, locale="zh-TW")
    try:
        order = new_order(stack, "C", 640)
        page = ctx.new_page()
        page.goto(order["checkout_url"])
        expect(page.locator("[data-copy]")).to_have_count(0)  # card page: nothing hidden to reveal
        page.locator("#pay-card").click()
        page.wait_for_url(re.compile(r"/sandbox/card/"))
        page.get_by_role("button", name="Pay", exact=True).click()
        # the bank's auto-submitting form needs a click without JavaScript
        page.get_by_role("button", name="Back to the shop").click()
        page.wait_for_url(re.compile(r"/qpay/return/[0-9a-f]+"))
        expect(page.locator("#status")).to_have_text("確認中")
        expect(page.locator("#status")).to_have_text("付款成功", timeout=SETTLE)  # by meta refresh
        shot(page, "return-card-nojs")
        page.wait_for_url(f"{shop_url}/orders/{order['order_no']}", timeout=(SHOP_RETURN_DELAY + 10) * 1000)
    finally:
        ctx.close()


def test_english_speaking_browser_gets_the_english_page(stack, browser):
    ctx = browser.new_context(locale="en-US", extra_http_headers={"Accept-Language": "en-US,en;q=0.9"})
    try:
        order = new_order(stack, "A", 1500, "Oolong tea")
        page = ctx.new_page()
        page.goto(order["checkout_url"])
        assert page.locator("html").get_attribute("lang") == "en"
        expect(page.locator("#status")).to_have_text("Awaiting payment")
        expect(page.locator("#status-zh")).to_have_text("待付款")  # the status also in Chinese, small
        expect(page.locator("#bank-code")).to_have_text("807 (Bank SinoPac)")
        expect(page.locator("h2")).to_have_text("How to pay")
        expect(page.locator("#deadline")).to_contain_text("(Taipei time)")
        shot(page, "checkout-atm-en")
        page.get_by_role("link", name="中文").click()
        expect(page.locator("#status")).to_have_text("待付款")
    finally:
        ctx.close()


def test_a_360_px_phone_never_scrolls_sideways(stack, browser):
    ctx = browser.new_context(viewport={"width": 360, "height": 640}, locale="zh-TW", is_mobile=True,
                              device_scale_factor=2)
    try:
        longest = "長" * 20 + "W" * 40  # 60 characters, the longest PrdtName, mostly unbreakable
        atm = new_order(stack, "A", 9_999_999 // 1000, longest)
        card = new_order(stack, "C", 1_000_000, longest)
        page = ctx.new_page()
        for name, url in (("phone-checkout-atm", atm["checkout_url"]),
                          ("phone-checkout-card", card["checkout_url"])):
            page.goto(url)
            expect(page.locator("#amount")).to_be_visible()
            width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1] == 360, f"{name}: content {width[0]} px wide in a 360 px viewport"
            shot(page, name, whole_page=True)
    finally:
        ctx.close()
