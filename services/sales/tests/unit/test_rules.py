"""The sales domain's rules without I/O: SKUs, money and quantities, and which price applies."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from crm_platform.auth import Principal
from crm_platform.errors import ValidationFailed
from crm_sales.domain import money
from crm_sales.domain import price_lists as pl
from crm_sales.domain.products import ProductIn, ProductPatch, apply_patch, new_product, normalise_sku

NOW = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
ME = Principal(user_id="u-1", roles=frozenset({"admin"}), department_path="/hq")


# --- SKU ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "sku"), [(" ab-100 ", "AB-100"), ("hx 200/b", "HX 200/B"), ("电机-01", "电机-01")])
def test_a_sku_is_trimmed_and_upper_cased(raw: str, sku: str) -> None:
    assert normalise_sku(raw) == sku


@pytest.mark.parametrize("raw", ["", "   ", "A" * 65, "AB\t1", "AB\n1"])
def test_a_sku_that_is_blank_too_long_or_has_control_characters_is_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        normalise_sku(raw)


def test_a_product_without_a_unit_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        ProductIn.model_validate({"sku": "a-1", "name": "服务器"})
    assert [e["loc"] for e in caught.value.errors()] == [("unit",)]


def test_a_patch_cannot_clear_a_required_field_and_reports_only_real_changes() -> None:
    doc = new_product("p-1", ProductIn(sku="a-1", name="服务器", unit="台"), ME, NOW)
    with pytest.raises(ValidationFailed) as caught:
        apply_patch(dict(doc), ProductPatch.model_validate({"unit": None}))
    assert caught.value.errors[0].field == "unit"
    changes = apply_patch(doc, ProductPatch.model_validate({"name": "服务器", "sku": " a-2 ", "category": "  "}))
    assert [(c.field, c.old, c.new) for c in changes] == [("sku", "A-1", "A-2")]  # blank category: still none


# --- money and quantities ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "currency", "minor", "shown"),
    [
        ("1280.5", "CNY", 128050, "1280.50"),
        ("1280", "CNY", 128000, "1280.00"),
        ("1280.500", "CNY", 128050, "1280.50"),
        ("0", "CNY", 0, "0.00"),
        ("1280", "JPY", 1280, "1280"),
        ("1.234", "KWD", 1234, "1.234"),
        (" 99.99 ", "usd", 9999, "99.99"),
    ],
)
def test_amounts_are_quantized_to_the_currencys_minor_unit(text: str, currency: str, minor: int, shown: str) -> None:
    assert money.to_minor(text, currency) == minor
    assert money.quantize(text, currency) == shown


@pytest.mark.parametrize(
    ("text", "currency", "why"),
    [
        ("-1", "CNY", "negative"),
        ("1280.505", "CNY", "at most 2 decimals"),
        ("1280.5", "JPY", "no decimals"),
        ("1,280.00", "CNY", "thousands separators"),
        ("1e3", "CNY", "not an amount"),
        ("NaN", "CNY", "not an amount"),
        ("1" * 16, "CNY", "too large"),
        ("12", "XYZ", "unknown currency"),
    ],
)
def test_amounts_that_are_not_prices_are_refused_with_a_reason(text: str, currency: str, why: str) -> None:
    with pytest.raises(money.InvalidMoney, match=why):
        money.to_minor(text, currency)


@given(st.integers(min_value=0, max_value=10**15 - 1), st.sampled_from(sorted(money.CURRENCY_EXPONENTS)))
def test_formatting_and_parsing_minor_units_round_trip(minor: int, currency: str) -> None:
    assert money.to_minor(money.format_minor(minor, currency), currency) == minor


@pytest.mark.parametrize(("text", "shown"), [("10", "10"), ("10.0", "10"), ("0.50", "0.5"), ("1.2345", "1.2345")])
def test_quantities_are_normalised(text: str, shown: str) -> None:
    assert money.quantity(text) == shown


@pytest.mark.parametrize("text", ["0", "-1", "1.23456", "abc"])
def test_quantities_must_be_positive_decimals(text: str) -> None:
    with pytest.raises(money.InvalidMoney):
        money.quantity(text)


# --- price lists and the price that applies ----------------------------------------------------


def price_list(list_id: str, tier: str | None = None, **fields: Any) -> dict[str, Any]:
    created = fields.pop("created_at", NOW)
    data = pl.PriceListIn.model_validate({"name": list_id, "currency": "CNY", "tier": tier, **fields})
    doc = pl.new_price_list(list_id, data, ME, created)
    doc["version"] = 1
    return doc


def priced(doc: dict[str, Any], product_id: str, price: str, min_quantity: str | None = None) -> dict[str, Any]:
    pl.set_entry(doc, product_id, pl.EntryIn(unit_price=price, min_quantity=min_quantity), ME, NOW)
    return doc


def test_the_tier_list_wins_over_the_default_list_and_the_default_serves_other_tiers() -> None:
    lists = [priced(price_list("default"), "p", "100"), priced(price_list("vip", "vip"), "p", "90")]
    assert lists[1]["tier"] == "VIP"
    found = pl.resolve(lists, "p", "VIP", date(2026, 12, 4))
    assert found is not None and found.price_list["_id"] == "vip" and found.entry["unit_price"] == "90.00"
    assert found.by_tier
    other = pl.resolve(lists, "p", "B", date(2026, 12, 4))
    assert other is not None and other.price_list["_id"] == "default" and not other.by_tier
    assert pl.resolve(lists, "missing", "VIP", date(2026, 12, 4)) is None


def test_a_tier_list_without_the_product_falls_back_to_the_default_list() -> None:
    lists = [priced(price_list("default"), "p", "100"), priced(price_list("vip", "VIP"), "q", "90")]
    found = pl.resolve(lists, "p", "VIP", date(2026, 12, 4))
    assert found is not None and found.price_list["_id"] == "default"


def test_only_active_lists_valid_on_the_day_apply_both_ends_included() -> None:
    window = priced(price_list("q4", valid_from="2026-10-01", valid_to="2026-12-31"), "p", "100")
    off = priced(price_list("off", active=False), "p", "1")
    assert pl.resolve([window, off], "p", None, date(2026, 9, 30)) is None
    for day in (date(2026, 10, 1), date(2026, 12, 31)):
        found = pl.resolve([window, off], "p", None, day)
        assert found is not None and found.price_list["_id"] == "q4"
    assert pl.resolve([window, off], "p", None, date(2027, 1, 1)) is None


def test_the_list_whose_validity_started_last_wins_then_the_newest() -> None:
    old = priced(price_list("old", valid_from="2026-01-01"), "p", "100")
    new = priced(price_list("new", valid_from="2026-11-01"), "p", "95")
    open_ = priced(price_list("open", created_at=NOW + timedelta(days=1)), "p", "80")
    found = pl.resolve([old, new, open_], "p", None, date(2026, 12, 4))
    assert found is not None and found.price_list["_id"] == "new"
    twin = priced(price_list("twin", valid_from="2026-11-01", created_at=NOW + timedelta(hours=1)), "p", "93")
    found = pl.resolve([old, new, twin], "p", None, date(2026, 12, 4))
    assert found is not None and found.price_list["_id"] == "twin"


def test_a_minimum_quantity_the_order_does_not_reach_skips_that_price() -> None:
    bulk = priced(price_list("bulk", "A"), "p", "80", min_quantity="100")
    default = priced(price_list("default"), "p", "100")
    small = pl.resolve([bulk, default], "p", "A", date(2026, 12, 4), Decimal("10"))
    assert small is not None and small.price_list["_id"] == "default"
    large = pl.resolve([bulk, default], "p", "A", date(2026, 12, 4), Decimal("100"))
    assert large is not None and large.price_list["_id"] == "bulk"
    unsaid = pl.resolve([bulk, default], "p", "A", date(2026, 12, 4))
    assert unsaid is not None and unsaid.entry["min_quantity"] == "100"


def test_an_entry_price_must_fit_the_lists_currency() -> None:
    doc = price_list("jpy", currency="JPY")
    with pytest.raises(ValidationFailed) as caught:
        priced(doc, "p", "10.5")
    assert caught.value.errors[0].field == "unit_price" and "no decimals" in caught.value.errors[0].reason
    entry, previous = pl.set_entry(doc, "p", pl.EntryIn(unit_price="1050"), ME, NOW)
    assert previous is None and entry["unit_price"] == "1050" and entry["unit_price_minor"] == 1050


def test_a_validity_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        pl.PriceListIn.model_validate(
            {"name": "x", "currency": "CNY", "valid_from": "2026-12-01", "valid_to": "2026-11-01"}
        )
    assert caught.value.errors()[0]["loc"] == ("valid_to",)
    doc = price_list("x", valid_from="2026-12-01")
    with pytest.raises(ValidationFailed) as failed:
        pl.apply_patch(doc, pl.PriceListPatch.model_validate({"valid_to": "2026-11-01"}))
    assert failed.value.errors[0].field == "valid_to"


def test_the_currency_of_a_list_with_prices_cannot_change() -> None:
    doc = priced(price_list("x"), "p", "10")
    with pytest.raises(ValidationFailed) as caught:
        pl.apply_patch(doc, pl.PriceListPatch.model_validate({"currency": "USD"}))
    assert caught.value.errors[0].field == "currency"
    empty = price_list("y")
    changes = pl.apply_patch(empty, pl.PriceListPatch.model_validate({"currency": "usd", "tier": "b"}))
    assert {(c.field, c.old, c.new) for c in changes} == {("currency", "CNY", "USD"), ("tier", None, "B")}
