"""Invoice rules without I/O: tax split of a tax-included amount quantized to the currency, the
rate and tax id checks, and never more than the payment (net of refunds) invoiced."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from crm_platform.errors import Conflict, ValidationFailed
from crm_sales.domain import invoices as rules

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def contract(currency: str = "CNY", amount_minor: int = 113000, refunded: int = 0) -> dict[str, Any]:
    payment = {"id": "p1", "amount": "x", "amount_minor": amount_minor, "refunded_minor": refunded}
    return {"_id": "c1", "currency": currency, "payments": [payment]}


def invoice_in(rate: str = "13", **fields: Any) -> rules.InvoiceIn:
    return rules.InvoiceIn(**{"payment_id": "p1", "tax_rate": rate, "title": "上海星辰科技有限公司", **fields})


@pytest.mark.parametrize(
    ("minor", "rate", "currency", "net", "tax"),
    [
        (113000, "13", "CNY", "1000.00", "130.00"),
        (100000, "13", "CNY", "884.96", "115.04"),  # 884.955... rounds half up
        (100, "6", "CNY", "0.94", "0.06"),
        (10000, "0", "CNY", "100.00", "0.00"),
        (1000, "10", "JPY", "909", "91"),
        (1000, "9.5", "KWD", "0.913", "0.087"),
    ],
)
def test_net_and_tax_add_up_to_the_amount_quantized_to_the_currency(
    minor: int, rate: str, currency: str, net: str, tax: str
) -> None:
    invoice = rules.reserve(contract(currency, minor), "v1", invoice_in(rate), "u", NOW)
    assert (invoice["net"], invoice["tax"]) == (net, tax)
    assert Decimal(invoice["net"]) + Decimal(invoice["tax"]) == Decimal(invoice["amount"])


def test_a_payment_is_invoiced_once_in_full_and_refunds_are_left_out() -> None:
    doc = contract(amount_minor=113000, refunded=13000)
    first = rules.reserve(doc, "v1", invoice_in(), "u", NOW)
    assert first["amount"] == "1000.00" and first["number"] is None
    with pytest.raises(Conflict, match="in full"):
        rules.reserve(doc, "v2", invoice_in(), "u", NOW)
    assert rules.issue(doc, "v1", 2026, 7)["number"] == "INV-2026-000007"  # type: ignore[index]
    assert rules.issue(doc, "v1", 2026, 8) is None  # a retry keeps the first number


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"tax_rate": "-1"}, "tax_rate"),
        ({"tax_rate": "101"}, "tax_rate"),
        ({"tax_rate": "13.005"}, "tax_rate"),
        ({"tax_rate": "abc"}, "tax_rate"),
        ({"title": "  "}, "title"),
        ({"buyer_tax_id": "123"}, "buyer_tax_id"),
        ({"buyer_tax_id": "91310000-MA1FL"}, "buyer_tax_id"),
        ({"payment_id": "nope"}, "payment_id"),
    ],
)
def test_bad_input_names_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        rules.reserve(contract(), "v1", invoice_in(**fields), "u", NOW)
    assert exc.value.errors[0].field == field


def test_a_tax_id_is_upper_cased() -> None:
    invoice = rules.reserve(contract(), "v1", invoice_in(buyer_tax_id=" 91310000ma1fl2xq7x "), "u", NOW)
    assert invoice["buyer_tax_id"] == "91310000MA1FL2XQ7X"
