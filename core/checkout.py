"""What the customer's pages need from the domain: signed checkout links, the shop's name, the way back.

Pure functions of the settings and an order number. A checkout token is an HMAC of the order number
under CHECKOUT_SECRET: it cannot be guessed or moved to another order, and nothing needs storing, so
the shop can rebuild the link at any time (GET /api/orders/<order_no> answers it too).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote

from core.secrets import Secret
from core.settings import Settings, UnknownShop

_PURPOSE = b"qpay-checkout-v1\x00"  # domain separation: the secret may sign other things later


def checkout_token(secret: Secret, order_no: str, shop_no: str | None = None) -> str:
    """43 URL-safe characters (HMAC-SHA256) bound to this order number (and to its shop, when several
    shops share the deployment: an OrderNo is unique per shop only)."""
    subject = (f"{shop_no}\x00" if shop_no else "") + order_no
    mac = hmac.new(secret.reveal().encode("utf-8"), _PURPOSE + subject.encode("utf-8"), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode("ascii")


def checkout_token_ok(
    secret: Secret | None, order_no: str, given: str | None, shop_no: str | None = None
) -> bool:
    """Constant-time check; no secret configured means no checkout page opens."""
    if secret is None or not given:
        return False
    return hmac.compare_digest(checkout_token(secret, order_no, shop_no).encode("ascii"),
                               given.encode("utf-8", "replace"))


def checkout_shop(settings: Settings, shop_no: str | None) -> str | None:
    """The shop a checkout link names: None with one shop (links as before), else a configured ShopNo
    (the default shop if none is given); raises core.shops.UnknownShop for any other."""
    if len(settings.all_shops) == 1:
        return None
    return settings.shop_for(shop_no).shop_no


def checkout_url(settings: Settings, order_no: str, shop_no: str | None = None) -> str | None:
    """The hosted payment page of an order, or None when CHECKOUT_SECRET is not set. With several shops
    the link names the order's shop (`&shop=`) and its token is bound to it."""
    if settings.checkout_secret is None:
        return None
    shop = checkout_shop(settings, shop_no)
    token = checkout_token(settings.checkout_secret, order_no, shop)
    url = f"{settings.public_base_url.rstrip('/')}/checkout/{quote(order_no, safe='')}?t={token}"
    return url if shop is None else f"{url}&shop={quote(shop, safe='')}"


def shop_display_name(settings: Settings, shop_no: str) -> str:
    """The name customers see for a shop: its own `name` (QPAY_SHOPS), else SHOP_NAME, else its ShopNo."""
    try:
        own = settings.shop_for(shop_no).name
    except UnknownShop:
        own = None
    return own or settings.shop_name or shop_no


def shop_return_url(settings: Settings, order_no: str) -> str | None:
    """SHOP_RETURN_URL with `{order_no}` filled in (URL-encoded); None when the shop gave no URL.

    Built only from the operator's template and our own order number: never from the request.
    """
    template = settings.shop_return_url
    if template is None:
        return None
    return template.replace("{order_no}", quote(order_no, safe=""))
