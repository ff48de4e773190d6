from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_pipeline.domain.money import InvalidMoney, currency_code, format_minor, line_total, to_minor, weighted


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("125000.00", "CNY", 12500000),
        ("125000", "CNY", 12500000),
        ("0.5", "CNY", 50),
        (" 7.05 ", "usd", 705),
        ("1000", "JPY", 1000),
        ("1000.00", "JPY", 1000),
        ("0", "CNY", 0),
        ("00012.30", "CNY", 1230),
    ],
)
def test_parses_decimal_strings_into_minor_units(text, currency, minor):
    assert to_minor(text, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency", "reason"),
    [
        ("-5", "CNY", "negative"),
        ("1,000.00", "CNY", "thousands separators"),
        ("12.345", "CNY", "at most 2 decimals"),
        ("10.5", "JPY", "no decimals"),
        ("1e5", "CNY", "not an amount"),
        ("", "CNY", "not an amount"),
        ("abc", "CNY", "not an amount"),
        ("1" * 16, "CNY", "too large"),
        ("1.00", "XYZ", "unknown currency"),
        ("１２", "CNY", "not an amount"),
    ],
)
def test_refuses_what_is_not_an_amount_with_a_reason(text, currency, reason):
    with pytest.raises(InvalidMoney, match=reason):
        to_minor(text, currency)


def test_formats_in_the_currency_precision():
    assert format_minor(12500000, "CNY") == "125000.00"
    assert format_minor(5, "CNY") == "0.05"
    assert format_minor(1000, "JPY") == "1000"
    assert currency_code(" cny ") == "CNY"


@given(st.integers(min_value=0, max_value=10**15 - 1), st.sampled_from(["CNY", "USD", "JPY"]))
def test_format_and_parse_round_trip(minor, currency):
    assert to_minor(format_minor(minor, currency), currency) == minor


def test_weighted_and_line_totals_round_half_up():
    assert weighted(12500000, 40) == 5000000
    assert weighted(1, 50) == 1  # 0.5 fen rounds up
    assert weighted(333, 33) == 110  # 109.89
    assert line_total(Decimal("2.5"), 199) == 498  # 497.5
