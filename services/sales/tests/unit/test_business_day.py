"""The contracts' business day: the date in the organisation's time zone, checked at start."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from crm_platform.clock import ManualClock
from crm_sales.application.contracts import business_day
from crm_sales.settings import SalesSettings


def test_the_business_day_is_the_date_in_the_zone_not_in_utc() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    assert business_day(ManualClock(datetime(2026, 12, 4, 15, 59, 59, tzinfo=UTC)), shanghai) == date(2026, 12, 4)
    assert business_day(ManualClock(datetime(2026, 12, 4, 16, 0, 0, tzinfo=UTC)), shanghai) == date(2026, 12, 5)
    naive = ManualClock(datetime(2026, 12, 4, 16, 0, 0))  # as read back from the store: UTC
    assert business_day(naive, shanghai) == date(2026, 12, 5)
    assert business_day(naive, ZoneInfo("UTC")) == date(2026, 12, 4)


def test_the_zone_defaults_to_shanghai_and_an_unknown_one_stops_the_start() -> None:
    assert SalesSettings().business_zone == ZoneInfo("Asia/Shanghai")
    assert SalesSettings(sales_business_timezone="Europe/Paris").business_zone == ZoneInfo("Europe/Paris")
    with pytest.raises(ValidationError, match="sales_business_timezone"):
        SalesSettings(sales_business_timezone="Mars/Olympus")
