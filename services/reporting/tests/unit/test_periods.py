"""Periods, buckets and subtrees in the business time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from crm_reporting.domain.periods import PeriodError, bucket_of, in_subtree, named_period, resolve_period

SH = ZoneInfo("Asia/Shanghai")


def test_named_periods() -> None:
    assert (named_period("2026-11", SH).start, named_period("2026-11", SH).end) == (
        date(2026, 11, 1),
        date(2026, 12, 1),
    )
    q4 = named_period("2026-Q4", SH)
    assert (q4.start, q4.end) == (date(2026, 10, 1), date(2027, 1, 1))
    year = named_period("2026", SH)
    assert (year.start, year.end) == (date(2026, 1, 1), date(2027, 1, 1))
    # Midnight in Shanghai is 16:00 UTC the day before.
    assert named_period("2026-11", SH).start_ms == int(datetime(2026, 10, 31, 16, tzinfo=UTC).timestamp() * 1000)
    for bad in ("2026-13", "2026-Q5", "26", "last week"):
        with pytest.raises(PeriodError):
            named_period(bad, SH)


def test_resolve_period_from_to_is_inclusive_and_defaults_to_this_month() -> None:
    p = resolve_period(None, date(2026, 11, 1), date(2026, 11, 7), SH, date(2026, 11, 20))
    assert (p.start, p.end) == (date(2026, 11, 1), date(2026, 11, 8))
    assert p.contains_day("2026-11-07") and not p.contains_day("2026-11-08") and not p.contains_day(None)
    default = resolve_period(None, None, None, SH, date(2026, 12, 31))
    assert (default.start, default.end, default.label) == (date(2026, 12, 1), date(2027, 1, 1), "2026-12")
    with pytest.raises(PeriodError) as e:
        resolve_period(None, date(2026, 11, 7), date(2026, 11, 1), SH, date(2026, 11, 20))
    assert e.value.field == "to"
    with pytest.raises(PeriodError):
        resolve_period("2026-11", date(2026, 11, 1), None, SH, date(2026, 11, 20))


def test_buckets_follow_the_time_zone() -> None:
    instant = int(datetime(2026, 11, 2, 16, 30, tzinfo=UTC).timestamp() * 1000)  # 11-03 00:30 in Shanghai
    assert bucket_of(instant, "day", SH) == "2026-11-03"
    assert bucket_of(instant, "day", ZoneInfo("UTC")) == "2026-11-02"
    assert bucket_of(instant, "week", SH) == "2026-W45"
    assert bucket_of(instant, "month", SH) == "2026-11"


def test_subtrees() -> None:
    assert in_subtree("/hq/east", "/hq") and in_subtree("/hq", "/hq/") and in_subtree("/x", None)
    assert not in_subtree("/hqx", "/hq") and not in_subtree(None, "/hq")
