from datetime import date

import pytest

from crm_pipeline.domain.periods import InvalidPeriod, parse_period


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2026-11", date(2026, 11, 1), date(2026, 12, 1)),
        ("2026-12", date(2026, 12, 1), date(2027, 1, 1)),
        ("2026-Q4", date(2026, 10, 1), date(2027, 1, 1)),
        ("2026-q1", date(2026, 1, 1), date(2026, 4, 1)),
        ("2026", date(2026, 1, 1), date(2027, 1, 1)),
        ("2024-02", date(2024, 2, 1), date(2024, 3, 1)),
    ],
)
def test_periods_have_an_inclusive_start_and_exclusive_end(text, start, end):
    period = parse_period(text)
    assert (period.start, period.end) == (start, end)
    assert period.contains(start) and not period.contains(end)


def test_sub_periods():
    q4 = parse_period("2026-Q4")
    assert [str(m) for m in q4.months()] == ["2026-10", "2026-11", "2026-12"]
    year = parse_period("2026")
    assert [str(q) for q in year.quarters()] == ["2026-Q1", "2026-Q2", "2026-Q3", "2026-Q4"]
    assert len(year.months()) == 12 and str(year) == "2026" and str(q4) == "2026-Q4"
    assert parse_period("2026-11").quarters() == []


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "2026-Q5", "26-11", "2026/11", "1999", "2026-11-01", ""])
def test_refuses_what_is_not_a_period(text):
    with pytest.raises(InvalidPeriod):
        parse_period(text)
