"""Line items' arithmetic and price choice (domain.lines): no I/O."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from crm_pipeline.domain import lines


def test_line_total_is_quantity_times_price_less_the_discount() -> None:
    assert lines.line_total(Decimal(3), 128000, Decimal(0)) == 384000
    assert lines.line_total(Decimal("2.5"), 1000, Decimal(10)) == 2250
    assert lines.line_total(Decimal(1), 999, Decimal(100)) == 0


def test_discount_rounds_half_up_to_the_minor_unit_once_per_line() -> None:
    # 1 × 0.05 × 90% = 0.045 -> 0.05 (half up), not 0.04 (banker's) and never a float's 0.04499...
    assert lines.line_total(Decimal(1), 5, Decimal(10)) == 5  # 4.5 fen -> 5 fen
    assert lines.line_total(Decimal(1), 5, Decimal("30")) == 4  # 3.5 fen -> 4 fen
    assert lines.line_total(Decimal("0.333"), 100, Decimal("12.5")) == 29  # 29.1375 fen -> 29


def test_quantity_and_discount_are_decimal_strings_in_range() -> None:
    assert lines.parse_quantity(" 2.50 ") == Decimal("2.50")
    assert lines.plain(Decimal("2.50")) == "2.5" and lines.plain(Decimal("10")) == "10"
    for bad in ("0", "-1", "1e3", "abc", "1,000"):
        with pytest.raises(lines.InvalidLine) as caught:
            lines.parse_quantity(bad)
        assert caught.value.field == "quantity"
    assert lines.parse_discount(None) == 0
    assert lines.parse_discount("100") == 100
    for bad in ("100.01", "-5", "ten"):
        with pytest.raises(lines.InvalidLine) as caught:
            lines.parse_discount(bad)
        assert caught.value.field == "discount_percent"


def _list(list_id: str, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {"_id": list_id, "active": True, "currency": "CNY", "tier": None, "entries": {}}
    return {**base, **fields}


def test_the_customers_tier_list_valid_today_wins_over_the_default() -> None:
    today = date(2026, 12, 4)
    lists = [
        _list("default", entries={"p": {"unit_price": "100.00"}, "q": {"unit_price": "7.00"}}),
        _list("vip", tier="VIP", entries={"p": {"unit_price": "90.00"}}),
        _list("other-tier", tier="A", entries={"p": {"unit_price": "1.00"}}),
        _list("expired", tier="VIP", valid_to="2026-12-03", entries={"p": {"unit_price": "2.00"}}),
        _list("future", valid_from="2026-12-05", entries={"p": {"unit_price": "3.00"}}),
        _list("usd", currency="USD", entries={"p": {"unit_price": "4.00"}}),
        _list("inactive", active=False, tier="VIP", entries={"p": {"unit_price": "5.00"}}),
    ]
    best = lines.pick_price_list(lists, "CNY", "VIP", today)
    assert [p["_id"] for p in best] == ["vip", "default"]
    assert lines.price_from(best, "p", "CNY") == lines.Price(9000, "vip")
    assert lines.price_from(best, "q", "CNY") == lines.Price(700, "default")  # not on the tier's list
    assert lines.price_from(best, "r", "CNY") is None
    assert [p["_id"] for p in lines.pick_price_list(lists, "CNY", None, today)] == ["default"]


def test_setting_lines_makes_the_amount_follow_only_with_the_flag() -> None:
    doc: dict[str, object] = {"currency": "CNY", "amount_minor": 100}
    line = {
        "product_id": "p",
        "sku": "S",
        "name": "n",
        "unit": "台",
        "quantity": "2",
        "unit_price_minor": 500,
        "discount_percent": "0",
        "line_total_minor": 1000,
    }
    changes = lines.set_lines(doc, [line], None)
    assert doc["amount_minor"] == 100 and {c.field for c in changes} == {"lines", "lines_total"}
    changes = lines.set_lines(doc, [line, line], True)
    assert doc["amount_minor"] == 2000
    assert {c.field for c in changes} == {"lines", "lines_total", "amount_follows_lines", "amount"}
    shown = lines.without_line_prices({"lines": lines.lines_out(doc), "lines_total": "20.00", "name": "x"})
    assert "lines_total" not in shown and "unit_price" not in shown["lines"][0]
    assert shown["lines"][0]["quantity"] == "2"
