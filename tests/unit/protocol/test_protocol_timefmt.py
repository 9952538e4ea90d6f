"""The bank's yyyyMMddHHmm fields are Asia/Taipei; ours are aware UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from core.sinopac.timefmt import from_bank_minute, to_bank_date, to_bank_minute


def test_utc_time_is_sent_as_taipei_minute() -> None:
    # 2024-01-01 16:30 UTC is 2024-01-02 00:30 in Taipei (UTC+8): the day changes too
    assert to_bank_minute(datetime(2024, 1, 1, 16, 30, 59, tzinfo=UTC)) == "202401020030"


def test_other_zones_are_converted_not_relabelled() -> None:
    new_york = timezone(timedelta(hours=-5))
    assert to_bank_minute(datetime(2024, 1, 1, 11, 30, tzinfo=new_york)) == "202401020030"


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        to_bank_minute(datetime(2024, 1, 1, 12, 0))


def test_bank_minute_is_read_as_taipei_and_returned_in_utc() -> None:
    parsed = from_bank_minute("202401021528")
    assert parsed == datetime(2024, 1, 2, 7, 28, tzinfo=UTC)
    assert parsed is not None
    assert parsed.utcoffset() == timedelta(0)


def test_bank_minute_round_trips() -> None:
    moment = datetime(2024, 2, 29, 23, 59, tzinfo=UTC)
    assert from_bank_minute(to_bank_minute(moment)) == moment


@pytest.mark.parametrize("empty", [None, "", "   "])
def test_absent_bank_time_is_none(empty: str | None) -> None:
    assert from_bank_minute(empty) is None


def test_bank_time_with_seconds_is_tolerated() -> None:
    assert from_bank_minute("20240102152830") == datetime(2024, 1, 2, 7, 28, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "garbage", ["2024-01-02", "202413011200", "20240102", "2024010215281", "abcdefghijkl"]
)
def test_malformed_bank_time_is_an_error_not_none(garbage: str) -> None:
    with pytest.raises(ValueError, match="not a bank time"):
        from_bank_minute(garbage)


def test_date_is_sent_as_yyyymmdd() -> None:
    assert to_bank_date(date(2024, 1, 10)) == "20240110"


def test_aware_datetime_as_date_uses_the_taipei_calendar_day() -> None:
    assert to_bank_date(datetime(2024, 1, 9, 17, 0, tzinfo=UTC)) == "20240110"
