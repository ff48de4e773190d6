"""Line items of an opportunity from the catalogue's products (issue 18): plain rules, no I/O.

A line is a product (as the read copy of ``crm.sales.v1`` knew it when the line was written:
name, SKU and unit are copied), a quantity, a unit price and a discount. Stored shape::

    {product_id, sku, name, unit, quantity: "2.5", unit_price_minor: 128000,
     discount_percent: "10", line_total_minor: 288000, price_list_id: "..." | None}

The line total is ``quantity × unit price × (100 − discount) / 100`` rounded half up to the
currency's minor unit, once per line; ``lines_total_minor`` is the sum of the rounded lines (what
a person adds up on the quotation). When ``amount_follows_lines`` is set, ``amount_minor`` is the
lines' total, written in the same guarded write as the lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol

from crm_pipeline.domain import money
from crm_platform.contracts.pipeline import FieldChange

Document = dict[str, Any]

MAX_LINES = 200
_DECIMAL = re.compile(r"^[0-9]{1,12}(?:\.[0-9]{1,6})?$")  # ASCII digits, no sign, no exponent
HUNDRED = Decimal(100)


class InvalidLine(ValueError):
    """A line's value is refused; ``field`` names it within the line (``quantity``, ``unit_price``...)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def parse_quantity(text: str) -> Decimal:
    value = text.strip()
    if not _DECIMAL.match(value):
        raise InvalidLine("quantity", f"not a quantity: '{text}'; write a decimal number such as '2' or '2.5'")
    quantity = Decimal(value)
    if quantity <= 0:
        raise InvalidLine("quantity", "must be greater than 0")
    return quantity


def parse_discount(text: str | None) -> Decimal:
    if text is None:
        return Decimal(0)
    value = text.strip()
    if not _DECIMAL.match(value):
        raise InvalidLine("discount_percent", f"not a percentage: '{text}'; write a number from 0 to 100")
    discount = Decimal(value)
    if discount > HUNDRED:
        raise InvalidLine("discount_percent", "at most 100")
    return discount


def line_total(quantity: Decimal, unit_price_minor: int, discount_percent: Decimal) -> int:
    """quantity × unit price × (100 − discount)%, rounded half up to a minor unit (never a float)."""
    exact = quantity * unit_price_minor * (HUNDRED - discount_percent) / HUNDRED
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def plain(value: Decimal) -> str:
    """'2.500' -> '2.5', '10.0' -> '10' (as the line shows it)."""
    return format(value.normalize(), "f")


@dataclass(frozen=True)
class Price:
    unit_price_minor: int
    price_list_id: str | None


def pick_price_list(lists: list[Document], currency: str, tier: str | None, today: date) -> list[Document]:
    """The price lists that apply, best first: active, in the currency, valid today, for the
    customer's tier before the default (tier null) ones; among equals the latest ``valid_from``."""
    today_text = today.isoformat()
    fitting = []
    for price_list in lists:
        if not price_list.get("active") or price_list.get("currency") != currency:
            continue
        start, end = price_list.get("valid_from"), price_list.get("valid_to")
        if (start and str(start)[:10] > today_text) or (end and str(end)[:10] < today_text):
            continue
        list_tier = price_list.get("tier")
        if list_tier is not None and list_tier != tier:
            continue
        fitting.append(price_list)
    # The customer's tier before the default lists; within each, the newest valid_from first.
    fitting.sort(key=lambda p: str(p.get("valid_from") or ""), reverse=True)
    return [p for p in fitting if p.get("tier") is not None] + [p for p in fitting if p.get("tier") is None]


def min_quantity(entry: Document) -> Decimal | None:
    """An entry's minimum quantity (``crm.price_list.entry_set`` carries it), None when it has none."""
    raw = entry.get("min_quantity")
    try:
        return Decimal(str(raw)) if raw not in (None, "") else None
    except ArithmeticError:
        return None


def price_from(lists: list[Document], product_id: str, currency: str, quantity: Decimal | None = None) -> Price | None:
    """The product's price on the first of ``lists`` (best first) that has it for ``quantity``: a
    list whose entry asks for more than ``quantity`` (``min_quantity``) does not apply, as the sales
    service resolves prices (a volume price list gives way to the next list)."""
    for price_list in lists:
        entry = (price_list.get("entries") or {}).get(product_id)
        if entry is not None:
            least = min_quantity(entry)
            if quantity is not None and least is not None and quantity < least:
                continue
            try:
                return Price(money.parse_money(entry["unit_price"], currency), price_list["_id"])
            except money.InvalidMoney:
                continue  # a price the currency cannot hold: not this list's
    return None


def least_quantity(lists: list[Document], product_id: str) -> Decimal | None:
    """The smallest quantity any of ``lists`` prices the product for (None: no list has it)."""
    minimums = [
        min_quantity(entry) or Decimal(0)
        for entry in ((p.get("entries") or {}).get(product_id) for p in lists)
        if entry is not None
    ]
    return min(minimums) if minimums else None


def lines_out(doc: Document) -> list[Document]:
    currency = doc["currency"]
    return [
        {
            "product_id": line["product_id"],
            "sku": line["sku"],
            "name": line["name"],
            "unit": line["unit"],
            "quantity": line["quantity"],
            "unit_price": money.format_money(line["unit_price_minor"], currency),
            "discount_percent": line["discount_percent"],
            "line_total": money.format_money(line["line_total_minor"], currency),
            "price_list_id": line.get("price_list_id"),
        }
        for line in doc.get("lines") or []
    ]


def lines_total_out(doc: Document) -> str:
    return money.format_money(int(doc.get("lines_total_minor") or 0), doc["currency"])


def set_lines(doc: Document, lines: list[Document], follows: bool | None) -> list[FieldChange]:
    """Store the lines (and the flag if given); with the flag on, the amount follows their total.
    Returns what changed (``lines``, ``lines_total``, ``amount_follows_lines``, ``amount``)."""
    before = _public(doc)
    doc["lines"] = lines
    doc["lines_total_minor"] = sum(line["line_total_minor"] for line in lines)
    if follows is not None:
        doc["amount_follows_lines"] = follows
    follow(doc)
    after = _public(doc)
    return [FieldChange(field=f, old=before[f], new=after[f]) for f in before if before[f] != after[f]]


def follow(doc: Document) -> None:
    """With the flag on, the amount is the lines' total (the free-text products stop driving it)."""
    if doc.get("amount_follows_lines"):
        doc["amount_minor"] = int(doc.get("lines_total_minor") or 0)
        doc["amount_from_products"] = False


def _public(doc: Document) -> Document:
    return {
        "lines": lines_out(doc),
        "lines_total": lines_total_out(doc),
        "amount_follows_lines": bool(doc.get("amount_follows_lines")),
        "amount": money.format_optional(doc.get("amount_minor"), doc["currency"]),
    }


class Errors(Protocol):
    def add(self, field: str, reason: str) -> None: ...


def patch_follow(errors: Errors, doc: Document, patch: Any, sent: set[str], old_currency: str, currency: str) -> None:
    """A create's or PATCH's part: the flag (``amount_follows_lines``) and what it forbids."""
    if "amount_follows_lines" in sent:
        doc["amount_follows_lines"] = bool(patch.amount_follows_lines)
    if doc.get("amount_follows_lines") and "amount" in sent and patch.amount is not None:
        errors.add("amount", "the amount follows the line items (amount_follows_lines); leave it out or set that false")
    if currency != old_currency and doc.get("lines"):
        errors.add(
            "currency",
            f"the line items are priced in {old_currency}; clear them (PUT .../lines with []) before changing it",
        )
    follow(doc)


def without_line_prices(shown: Document) -> Document:
    """An opportunity's API body for a caller whose role hides ``amount``: the lines stay (product,
    quantity, discount), their unit prices and totals go, and so does the lines' total."""
    out = {k: v for k, v in shown.items() if k != "lines_total"}
    if isinstance(out.get("lines"), list):
        out["lines"] = [
            {k: v for k, v in line.items() if k not in ("unit_price", "line_total")} for line in out["lines"]
        ]
    return out
