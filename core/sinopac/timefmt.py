"""The bank's date fields: `yyyyMMddHHmm` / `yyyyMMdd` in Taiwan time, our times are aware UTC.

The bank never says which zone it means (PROTOCOL.md §12.5); Asia/Taipei (UTC+8, no DST) is what every
public sample implies, so the conversion lives here, in one place.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

__all__ = ["BANK_TZ", "from_bank_minute", "to_bank_date", "to_bank_minute"]

BANK_TZ = ZoneInfo("Asia/Taipei")

_MINUTE = re.compile(r"^\d{12}(\d{2})?$")  # yyyyMMddHHmm, tolerating trailing seconds


def _require_aware(dt: datetime) -> None:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware (naive times are ambiguous for the bank)")


def to_bank_minute(dt: datetime) -> str:
    """An aware datetime as the bank's `yyyyMMddHHmm` in Asia/Taipei (seconds are dropped)."""
    _require_aware(dt)
    return dt.astimezone(BANK_TZ).strftime("%Y%m%d%H%M")


def from_bank_minute(value: str | None) -> datetime | None:
    """The bank's `yyyyMMddHHmm` (Asia/Taipei) as aware UTC; None for an absent or empty field.

    Raises ValueError for a value that is present but not a valid bank time, so a caller never
    mistakes garbage for "no date".
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if not _MINUTE.match(text):
        raise ValueError(f"not a bank time (yyyyMMddHHmm): {text[:20]!r}")
    try:  # the fields by position (the pattern checked the digits): strptime was a settlement's slowest call
        local = datetime(int(text[:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]), int(text[10:12]),
                         int(text[12:14] or 0), tzinfo=BANK_TZ)
    except ValueError:
        raise ValueError(f"not a bank time (yyyyMMddHHmm): {text!r}") from None
    return local.astimezone(UTC)


def to_bank_date(d: date) -> str:
    """A date as `yyyyMMdd`; an aware datetime is first converted to its Taipei calendar day."""
    if isinstance(d, datetime):
        _require_aware(d)
        d = d.astimezone(BANK_TZ).date()
    return d.strftime("%Y%m%d")
