"""Ageing buckets, rates, averages and the lifetime-value sort key."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from crm_reporting.application.salesfigures import collected_by, sla_outcome
from crm_reporting.domain.receivables import average, bucket, day_key, key_day, rate, value_rank

AS_OF = date(2026, 12, 10)


def test_buckets_by_whole_days_past_the_due_day() -> None:
    assert bucket(date(2026, 12, 10), AS_OF) == "not_due"  # due today: not overdue yet
    assert bucket(date(2026, 12, 31), AS_OF) == "not_due"
    assert bucket(date(2026, 12, 9), AS_OF) == "0-30"
    assert bucket(date(2026, 11, 10), AS_OF) == "0-30"  # 30 days
    assert bucket(date(2026, 11, 9), AS_OF) == "31-60"  # 31 days
    assert bucket(date(2026, 10, 11), AS_OF) == "31-60"  # 60
    assert bucket(date(2026, 10, 10), AS_OF) == "61-90"  # 61
    assert bucket(date(2026, 9, 11), AS_OF) == "61-90"  # 90
    assert bucket(date(2026, 9, 10), AS_OF) == "90+"  # 91


def test_rates_are_decimal_strings_with_four_places() -> None:
    assert rate(Decimal("300"), Decimal("1300")) == "0.2308"
    assert rate(Decimal("1"), Decimal("3")) == "0.3333"
    assert rate(Decimal("2"), Decimal("3")) == "0.6667"
    assert rate(Decimal("0"), Decimal("5")) == "0.0000"
    assert rate(Decimal("7"), Decimal("5")) == "1.4000"  # over-attained
    assert rate(Decimal("1"), Decimal("0")) is None
    assert average(7, 2) == "3.50" and average(10, 3) == "3.33" and average(0, 0) is None


def test_day_keys_and_the_value_rank_sort_like_what_they_stand_for() -> None:
    assert day_key(date(2026, 1, 5)) == 20260105 and key_day(20260105) == date(2026, 1, 5)
    assert day_key(date(2025, 12, 31)) < day_key(date(2026, 1, 1))
    ranks = [
        value_rank("CNY", Decimal(v), c) for v, c in (("950.00", "b"), ("1000.01", "a"), ("200", "c"), ("950", "a"))
    ]
    assert [r.split("|")[2] for r in sorted(ranks)] == ["a", "a", "b", "c"]
    assert sorted(ranks)[0] == value_rank("CNY", Decimal("1000.01"), "a")
    assert value_rank("CNY", Decimal("-5"), "x") == value_rank("CNY", Decimal("0"), "x")  # refunded in full
    assert all(r.startswith("CNY|") for r in ranks) and value_rank("USD", Decimal(1), "a") > "CNY|~"


def test_sla_outcome_per_target() -> None:
    doc = {"first_response_due_ms": 100, "resolution_due_ms": 1000, "breached": []}
    assert sla_outcome({**doc, "first_responded_ms": 100}, "first_response", 5000) == "met"
    assert sla_outcome({**doc, "first_responded_ms": 101}, "first_response", 5000) == "breached"
    assert sla_outcome({**doc, "breached": ["resolution"]}, "resolution", 50) == "breached"
    assert sla_outcome(doc, "resolution", 999) == "open_at_risk"
    assert sla_outcome(doc, "resolution", 1001) == "breached"  # past due, no event yet


def test_collected_by_the_end_of_a_day() -> None:
    i = {
        "amount": "300.00",
        "history": [[0, "20.00"], [20261105, "100.00"], [20261120, "250.00"], [20261120, "-30.00"]],
    }
    assert collected_by(i, 20261104) == Decimal("20.00")
    assert collected_by(i, 20261105) == Decimal("120.00")
    assert collected_by(i, 20261130) == Decimal("300.00")  # 340 received: never more than the amount
    assert collected_by({"amount": "5", "history": [[1, "-9"]]}, 2) == Decimal(0)


def test_sums_are_shown_in_their_currencys_precision() -> None:
    from decimal import Decimal

    from crm_reporting.domain.money import money_in

    assert money_in(Decimal("1000"), "JPY") == "1000"
    assert money_in(Decimal("1.234") + Decimal("2.001"), "KWD") == "3.235"
    assert money_in(Decimal("12.5"), "CNY") == "12.50"
    assert money_in(Decimal("7"), "XTS") == "7.00"  # a code the platform does not know: two decimals
