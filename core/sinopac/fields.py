"""The rules for the identifiers and texts we exchange with the bank, each written once.

OrderNo, PayToken, ShopNo and PrdtName (PROTOCOL.md §9.1, §10): the orders API, the domain, the
callback log, the shop configuration and the bank client all check them here, so that what one layer
lets in, the next never refuses. Patterns are for `fullmatch` (a `$` would let a trailing newline in).
"""

from __future__ import annotations

import re

__all__ = [
    "CONTROL_CHARS",
    "FORBIDDEN_CHARS",
    "ORDER_NO_RE",
    "PAY_TOKEN_RE",
    "PRODUCT_NAME_MAX",
    "SHOP_NO_RE",
    "is_valid_product_name",
]

# Ours, stricter than the bank's 50 characters without ' " %: safe in URLs, logs and file names.
ORDER_NO_RE = re.compile(r"[A-Za-z0-9_-]{1,50}")
PAY_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
SHOP_NO_RE = re.compile(r"[A-Za-z0-9_]{1,20}")
FORBIDDEN_CHARS = re.compile(r"['\"%]")  # §9.1: no ' " % in OrderNo and PrdtName
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
PRODUCT_NAME_MAX = 60


def is_valid_product_name(name: object) -> bool:
    """PrdtName as the bank takes it: 1-60 characters, not blank, no ' " % and no control characters."""
    return (
        isinstance(name, str)
        and bool(name.strip())
        and len(name) <= PRODUCT_NAME_MAX
        and not FORBIDDEN_CHARS.search(name)
        and not CONTROL_CHARS.search(name)
    )
