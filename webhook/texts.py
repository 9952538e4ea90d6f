"""Every word the customer's pages show, in Traditional Chinese (the default) and English, in one place.

Also how those pages format amounts and times for Taiwan, and which language a request gets:
`?lang=en` / `?lang=zh-TW` first, then the browser's Accept-Language, else zh-TW.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from flask import Request

from core.sinopac.timefmt import BANK_TZ

Lang = Literal["zh-TW", "en"]
DEFAULT_LANG: Lang = "zh-TW"

TEXTS: dict[Lang, dict[str, str]] = {
    "zh-TW": {
        "checkout_title": "付款",
        "return_title": "付款結果",
        "order_no": "訂單編號",
        "product": "商品",
        "amount": "金額",
        "method": "付款方式",
        "method_A": "ATM 轉帳（虛擬帳號）",
        "method_C": "信用卡",
        "status": "付款狀態",
        "status_confirming": "確認中",
        "status_awaiting": "待付款",
        "status_paid": "付款成功",
        "status_failed": "付款失敗",
        "status_expired": "已逾期",
        "status_review": "待人工確認",
        "note_confirming": "我們正在向銀行確認您的付款，請稍候，並請勿重複付款。",
        "note_paid": "我們已收到您的付款，謝謝您！",
        "note_failed": "這筆付款沒有成功。請回到商店重新付款，或改用其他付款方式。",
        "note_expired": "此訂單已超過付款期限，請勿再轉帳。如需購買，請回到商店重新下單。",
        "note_review": "這筆付款需要商店人工確認，商店會盡快與您聯繫。",
        "bank_code": "銀行代碼",
        "bank_name": "807（永豐銀行）",
        "account": "轉帳帳號",
        "copy_account": "複製帳號",
        "copied": "已複製",
        "deadline": "繳費期限",
        "pay_by": "付款期限",
        "taipei_time": "（台北時間）",
        "atm_steps_title": "如何付款",
        "atm_step_1": "使用任一銀行的 ATM、網路銀行或行動銀行，選擇「轉帳」。",
        "atm_step_2": "輸入銀行代碼 807（永豐銀行）與上方的轉帳帳號。",
        "atm_step_3": "轉帳金額須與訂單金額完全相同，並於繳費期限前完成。",
        "atm_step_4": "完成後不必通知我們：收到款項時本頁會自動顯示付款成功。",
        "card_intro": "點選下方按鈕，前往永豐銀行的安全付款頁面輸入信用卡資料。",
        "card_button": "前往信用卡付款",
        "live_note": "本頁會自動更新付款狀態。",
        "back_to_shop": "返回商店",
        "redirect_note": "{seconds} 秒後將自動返回商店。",
        "may_close": "您可以關閉此頁面。",
        "not_found_title": "找不到此頁面",
        "not_found": "此付款連結無效或已失效，請回到商店重新開啟。",
        "bad_notice_title": "無法讀取此付款通知",
        "busy_title": "請稍後再試",
        "busy": "目前無法記錄您的付款通知，請於一分鐘後重新整理此頁面。",
        "unavailable": "目前無法顯示付款資訊，請於一分鐘後重新整理此頁面。",
        "other_lang": "English",
        "other_lang_code": "en",
    },
    "en": {
        "checkout_title": "Payment",
        "return_title": "Payment result",
        "order_no": "Order number",
        "product": "Product",
        "amount": "Amount",
        "method": "Payment method",
        "method_A": "ATM transfer (virtual account)",
        "method_C": "Credit card",
        "status": "Payment status",
        "status_confirming": "Confirming",
        "status_awaiting": "Awaiting payment",
        "status_paid": "Payment successful",
        "status_failed": "Payment failed",
        "status_expired": "Expired",
        "status_review": "Under review by the shop",
        "note_confirming": "We are confirming your payment with the bank. Please wait, and do not pay again.",
        "note_paid": "We have received your payment. Thank you!",
        "note_failed": "This payment did not go through. Please go back to the shop to try again or "
                       "choose another way to pay.",
        "note_expired": "This order is past its payment deadline; please do not transfer money for it. "
                        "Go back to the shop to order again.",
        "note_review": "The shop needs to check this payment by hand and will contact you soon.",
        "bank_code": "Bank code",
        "bank_name": "807 (Bank SinoPac)",
        "account": "Account number",
        "copy_account": "Copy",
        "copied": "Copied",
        "deadline": "Pay by",
        "pay_by": "Pay by",
        "taipei_time": " (Taipei time)",
        "atm_steps_title": "How to pay",
        "atm_step_1": "At any bank's ATM, internet or mobile banking, choose \u201ctransfer\u201d.",
        "atm_step_2": "Enter bank code 807 (Bank SinoPac) and the account number above.",
        "atm_step_3": "Transfer exactly the order's amount, before the deadline.",
        "atm_step_4": "No need to tell us: this page shows the payment as soon as it arrives.",
        "card_intro": "Use the button below to enter your card on Bank SinoPac's secure payment page.",
        "card_button": "Pay by card",
        "live_note": "This page updates the payment status by itself.",
        "back_to_shop": "Back to the shop",
        "redirect_note": "Taking you back to the shop in {seconds} seconds.",
        "may_close": "You may close this page.",
        "not_found_title": "Page not found",
        "not_found": "This payment link is not valid. Please open it again from the shop.",
        "bad_notice_title": "We could not read this payment notice",
        "busy_title": "Please try again in a minute",
        "busy": "We could not record your payment notice right now. Reload this page in a minute.",
        "unavailable": "We cannot show this payment right now. Reload this page in a minute.",
        "other_lang": "中文",
        "other_lang_code": "zh-TW",
    },
}


def pick_language(request: Request) -> Lang:
    """`?lang=` wins; else the first Accept-Language entry (by quality) that is English or Chinese."""
    asked = (request.args.get("lang") or "").lower()
    if asked.startswith("en"):
        return "en"
    if asked.startswith("zh"):
        return "zh-TW"
    for value, _quality in request.accept_languages:  # sorted best first
        tag = value.lower()
        if tag.startswith("en"):
            return "en"
        if tag.startswith("zh"):
            return "zh-TW"
    return DEFAULT_LANG


def twd(amount_x100: int) -> str:
    """NT$1,234 (cents only when there are some: NT$1,234.50)."""
    whole, cents = divmod(amount_x100, 100)
    return f"NT${whole:,}" if cents == 0 else f"NT${whole:,}.{cents:02d}"


def taipei_deadline(expires_at: datetime) -> str:
    """The last minute one can pay, in Taipei time, as Taiwan writes it: 2026/12/01 23:59.

    expires_at is the first instant that is too late (an ATM day ends at midnight), hence one second back.
    """
    return (expires_at - timedelta(seconds=1)).astimezone(BANK_TZ).strftime("%Y/%m/%d %H:%M")


def account_groups(number: str) -> str:
    """A virtual account number in groups of four digits, as printed on Taiwanese payment slips."""
    return " ".join(number[i:i + 4] for i in range(0, len(number), 4))
