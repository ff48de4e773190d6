"""Quotation rules without I/O: totals and discounts in Decimal quantized to the currency, the
number's format, the approval threshold and the status moves (expired computed on read)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from crm_platform.errors import Conflict, ValidationFailed
from crm_sales.domain import quotations as rules

TODAY = date(2026, 6, 1)
PRODUCT = {"_id": "p1", "sku": "ECS-1", "name": "云服务器", "unit": "台"}


def line(quantity: str, price: str, discount: str = "0") -> rules.PricedLine:
    return rules.PricedLine(PRODUCT, quantity, price, discount)


def doc(status: str = "draft", valid_until: str = "2026-06-30", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"_id": "q1", "status": status, "valid_until": valid_until, "revision": 1, "currency": "CNY"}
    base.update(fields)
    return base


def test_a_line_is_quantity_times_price_less_its_discount_quantized_to_the_currency() -> None:
    got = rules.line_doc(line("3", "1280.5", "12.5"), "CNY")
    assert got["unit_price"] == "1280.50" and got["gross"] == "3841.50"
    assert got["discount"] == "480.19"  # 480.1875 rounded half up to the fen
    assert got["amount"] == "3361.31"
    yen = rules.line_doc(line("0.5", "999", "10"), "JPY")
    assert (yen["gross"], yen["discount"], yen["amount"]) == ("500", "50", "450")  # 499.5 -> 500


def test_totals_are_the_sums_of_the_lines() -> None:
    lines = [rules.line_doc(line("3", "1280.5", "12.5"), "CNY"), rules.line_doc(line("1.25", "99.99"), "CNY")]
    got = rules.totals(lines, "CNY")
    assert got["subtotal"] == "3966.49" and got["discount_total"] == "480.19" and got["total"] == "3486.30"
    assert got["total_minor"] == 348630
    assert Decimal(got["total"]) == sum(Decimal(x["amount"]) for x in lines)


def test_the_discount_threshold_decides_whether_approval_is_needed() -> None:
    at = [rules.line_doc(line("1", "100", "15"), "CNY")]
    above = [*at, rules.line_doc(line("1", "100", "15.01"), "CNY")]
    assert rules.needs_approval(at, Decimal(15)) is False
    assert rules.needs_approval(above, Decimal(15)) is True


@pytest.mark.parametrize(("raw", "normalised"), [("0", "0"), ("0.00", "0"), ("12.50", "12.5"), ("100", "100")])
def test_a_discount_percent_is_a_decimal_between_0_and_100(raw: str, normalised: str) -> None:
    assert rules.discount_percent(raw) == normalised


@pytest.mark.parametrize("raw", ["-1", "100.01", "101", "12.345", "abc", "1e2", ""])
def test_bad_discounts_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        rules.discount_percent(raw)


def test_a_line_in_refuses_a_bad_quantity_naming_it() -> None:
    with pytest.raises(ValidationError) as caught:
        rules.LineIn(product_id="p", quantity="0")
    assert caught.value.errors()[0]["loc"] == ("quantity",)
    with pytest.raises(ValidationError):
        rules.QuotationIn(customer_id="c", currency="CNY", valid_until=TODAY, lines=[])


def test_a_unit_price_the_currency_cannot_hold_names_the_line() -> None:
    with pytest.raises(ValidationFailed) as caught:
        rules.unit_price("1.005", "CNY", 3)
    assert caught.value.errors[0].field == "lines[3].unit_price"


def test_the_number_format() -> None:
    assert rules.format_number(2026, 123) == "Q-2026-000123"
    assert rules.format_number(2026, 1234567) == "Q-2026-1234567"
    assert rules.parse_number("Q-2026-000123") == (2026, 123)
    assert rules.counter_id(2026) == "quotation:2026"
    with pytest.raises(ValueError):
        rules.format_number(2026, 0)
    with pytest.raises(ValueError):
        rules.parse_number("Q-26-1")


def test_status_moves() -> None:
    assert rules.check_move(doc(), "send", TODAY) == "sent"
    assert rules.check_move(doc(needs_approval=True), "submit", TODAY) == "pending_approval"
    assert rules.check_move(doc("pending_approval"), "approve", TODAY) == "approved"
    assert rules.check_move(doc("pending_approval"), "reject", TODAY) == "rejected"
    assert rules.check_move(doc("approved", needs_approval=True), "send", TODAY) == "sent"
    assert rules.check_move(doc("sent"), "accept", TODAY) == "accepted"
    assert rules.check_move(doc("sent"), "decline", TODAY) == "declined"
    refused = [
        (doc(needs_approval=True), "send", "approval-required"),
        (doc(), "submit", "approval-not-needed"),
        (doc("sent"), "approve", "status"),
        (doc("accepted"), "decline", "status"),
        (doc("draft"), "accept", "status"),
    ]
    for stored, action, reason in refused:
        with pytest.raises(Conflict) as caught:
            rules.check_move(stored, action, TODAY)
        assert caught.value.extra["reason"] == reason, (stored, action)


def test_an_open_quotation_past_valid_until_is_expired_and_moves_no_further() -> None:
    old = doc("sent", valid_until="2026-05-31")
    assert rules.shown_status(old, TODAY) == "expired"
    assert rules.shown_status(doc("sent", valid_until="2026-06-01"), TODAY) == "sent"  # the last day counts
    assert rules.shown_status(doc("accepted", valid_until="2026-05-31"), TODAY) == "accepted"
    with pytest.raises(Conflict) as caught:
        rules.check_move(old, "accept", TODAY)
    assert caught.value.extra["reason"] == "expired" and "valid_until" in caught.value.detail
    with pytest.raises(Conflict):
        rules.check_editable(doc(valid_until="2026-05-31"), TODAY)


def test_a_revision_keeps_the_previous_one_and_starts_a_draft() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    current = doc("rejected", lines=[], total="1.00", approval={"decision": "reject"})
    rules.check_revisable(current, TODAY)
    rules.start_revision(current, now, "u1")
    assert current["revision"] == 2 and current["status"] == "draft" and current["approval"] is None
    (kept,) = current["previous"]
    assert kept["revision"] == 1 and kept["status"] == "rejected" and kept["superseded_at"] == now
    for status in ("draft", "pending_approval", "accepted"):
        with pytest.raises(Conflict):
            rules.check_revisable(doc(status), TODAY)
