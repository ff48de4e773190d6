"""Price lists: per currency and optionally per customer tier, valid over a period, with one price
per product; and the rule that picks the price that applies (no I/O).

A list without a tier is the default list of its currency. The price of a product for a tier on a
day is the one of the tier's lists first, then of the currency's default lists: among the lists of
one kind that are active, valid on the day and hold the product (and, when a quantity is asked
for, whose minimum the quantity reaches), the one whose validity started last wins (the most
recent list supersedes an older one still open), then the one created last, then the id.

The entries live in the list's own document (``entries``: product id -> entry), so setting a price
and its event are one guarded write; a list holds at most :data:`MAX_ENTRIES` products.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from crm_platform.auth import Principal
from crm_platform.contracts import sales as ev
from crm_platform.errors import Conflict, ValidationFailed
from crm_platform.sortkeys import epoch_ms
from crm_sales.domain import money

Document = dict[str, Any]

SORT_FIELDS = {"name": "s.name", "created_at": "s.created_at", "valid_from": "s.valid_from"}
DEFAULT_SORT = "name"
MAX_ENTRIES = 5000
#: The stored tier of a default list: "" rather than null, so "the default list" is an equality an
#: index serves (nulls compare unreliably on the embedded store).
DEFAULT_TIER = ""
#: valid_from / valid_to as integer days (YYYYMMDD) for sorting; open ends as the extremes.
OPEN_START = 0
OPEN_END = 99991231


def _currency(value: str) -> str:
    try:
        return money.currency_code(value)
    except money.InvalidMoney as exc:
        raise ValueError(str(exc)) from exc


def normalise_tier(raw: str | None) -> str | None:
    """A customer tier code as stored: trimmed, upper-cased ("vip" is VIP); blank is no tier."""
    if raw is None:
        return None
    tier = raw.strip().upper()
    if not tier:
        return None
    if not re.fullmatch(r"[^\x00-\x1f\x7f]{1,32}", tier):
        raise ValueError("at most 32 characters, no control characters")
    return tier


def _name(value: str) -> str:
    text = value.strip()
    if not text:
        raise ValueError("must not be blank")
    return text


def _quantity(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return money.quantity(value)
    except money.InvalidMoney as exc:
        raise ValueError(str(exc)) from exc


Currency = Annotated[str, Field(min_length=3, max_length=3, examples=["CNY"]), AfterValidator(_currency)]
Tier = Annotated[str, Field(max_length=64, examples=["VIP"]), AfterValidator(normalise_tier)]
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_name)]
Quantity = Annotated[
    str,
    Field(min_length=1, max_length=40, description='A decimal string above 0, e.g. "10" (a JSON number is refused).'),
    AfterValidator(_quantity),
]


class PriceListIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    currency: Currency
    tier: Tier | None = Field(
        default=None, description="A customer tier code (A, B, VIP ...); absent: the default list."
    )
    active: bool = True
    valid_from: date | None = Field(default=None, description="First day it applies; absent: since always.")
    valid_to: date | None = Field(default=None, description="Last day it applies; absent: open-ended.")

    @field_validator("valid_to")
    @classmethod
    def _not_before_start(cls, value: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("valid_from")
        if value is not None and start is not None and value < start:
            raise ValueError(f"must not be before valid_from ({start.isoformat()})")
        return value


class PriceListPatch(BaseModel):
    """Fields to change (only those sent). ``currency`` only while the list has no entries."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    currency: Currency | None = None
    tier: Tier | None = Field(default=None, description="null (or blank): make it the currency's default list.")
    active: bool | None = None
    valid_from: date | None = Field(default=None, description="null: since always.")
    valid_to: date | None = Field(default=None, description="null: open-ended.")


class EntryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit_price: str = Field(
        min_length=1,
        max_length=40,
        description='A decimal string in the list\'s currency, e.g. "1280.00" (a JSON number is refused); '
        "no more decimals than the currency has, not negative.",
        examples=["1280.00"],
    )
    min_quantity: Quantity | None = Field(default=None, description="The least quantity this price is for.")


def day_number(day: date | str | None, default: int) -> int:
    """A date as the integer YYYYMMDD, which orders as the dates do (``default`` for none)."""
    if day is None:
        return default
    value = day if isinstance(day, date) else date.fromisoformat(day)
    return value.year * 10000 + value.month * 100 + value.day


def sort_keys(doc: Document) -> Document:
    return {
        "name": str(doc["name"]).casefold(),
        "created_at": epoch_ms(doc["created_at"]),
        "valid_from": day_number(doc.get("valid_from"), OPEN_START),
        "id": doc["_id"],
    }


def new_price_list(list_id: str, data: PriceListIn, principal: Principal, now: datetime) -> Document:
    doc: Document = {
        "_id": list_id,
        "name": data.name,
        "currency": data.currency,
        "tier": data.tier or DEFAULT_TIER,
        "active": data.active,
        "valid_from": data.valid_from.isoformat() if data.valid_from else None,
        "valid_to": data.valid_to.isoformat() if data.valid_to else None,
        "entries": {},
        "entry_count": 0,  # beside the entries, for list pages (which leave the entries out)
        "live": True,  # always true: the prefix every list index starts with
        "created_at": now,
        "created_by": principal.user_id,
        "updated_at": now,
        "updated_by": principal.user_id,
    }
    doc["s"] = sort_keys(doc)
    return doc


def apply_patch(doc: Document, patch: PriceListPatch) -> list[ev.FieldChange]:
    """Apply ``patch`` to ``doc``; the changes as the API shows them (a default list's tier: null)."""
    values = patch.model_dump(mode="json", include=patch.model_fields_set)
    for name in ("name", "currency", "active"):
        if name in values and values[name] is None:
            raise ValidationFailed.for_field(name, "cannot be cleared")
    if "tier" in values:
        values["tier"] = values["tier"] or DEFAULT_TIER
    if "currency" in values and values["currency"] != doc["currency"] and doc["entries"]:
        raise ValidationFailed.for_field(
            "currency",
            f"the list has {len(doc['entries'])} prices in {doc['currency']}: remove them first, "
            "or create a list in the new currency",
        )
    start = values["valid_from"] if "valid_from" in values else doc.get("valid_from")
    end = values["valid_to"] if "valid_to" in values else doc.get("valid_to")
    if start is not None and end is not None and end < start:
        field = "valid_to" if "valid_to" in values else "valid_from"
        raise ValidationFailed.for_field(field, f"the list would end ({end}) before it starts ({start})")
    changes: list[ev.FieldChange] = []
    for name, new in values.items():
        old = doc.get(name)
        if old != new:
            doc[name] = new
            if name == "tier":  # a default list's tier is shown as null, as the API shows it
                old, new = old or None, new or None
            changes.append(ev.FieldChange(field=name, old=old, new=new))
    return changes


def set_entry(
    doc: Document, product_id: str, data: EntryIn, principal: Principal, now: datetime
) -> tuple[Document, Document | None]:
    """Put the product's price on the list; (the new entry, the one it replaced). 422 names
    ``unit_price`` when the amount does not fit the list's currency; 409 when the list is full."""
    currency = doc["currency"]
    try:
        minor = money.to_minor(data.unit_price, currency)
    except money.InvalidMoney as exc:
        raise ValidationFailed.for_field("unit_price", str(exc)) from exc
    previous = doc["entries"].get(product_id)
    if previous is None and len(doc["entries"]) >= MAX_ENTRIES:
        raise Conflict(f"The price list holds {MAX_ENTRIES} products already: start another list.")
    entry = {
        "product_id": product_id,
        "unit_price": money.format_minor(minor, currency),
        "unit_price_minor": minor,
        "min_quantity": data.min_quantity,
        "set_at": now,
        "set_by": principal.user_id,
    }
    doc["entries"][product_id] = entry
    return entry, previous


def applies_on(doc: Document, day: date) -> bool:
    """Active, and ``day`` within its validity (both ends included)."""
    number = day_number(day, OPEN_START)
    start = day_number(doc.get("valid_from"), OPEN_START)
    end = day_number(doc.get("valid_to"), OPEN_END)
    return bool(doc.get("active")) and start <= number <= end


@dataclass(frozen=True)
class Resolved:
    price_list: Document
    entry: Document
    by_tier: bool  # found on a list of the asked tier (False: the currency's default list)


def _usable(entry: Document | None, quantity: Decimal | None) -> bool:
    if entry is None:
        return False
    minimum = entry.get("min_quantity")
    return quantity is None or minimum is None or quantity >= Decimal(minimum)


def _precedence(doc: Document) -> tuple[int, int, str]:
    return (day_number(doc.get("valid_from"), OPEN_START), epoch_ms(doc["created_at"]), str(doc["_id"]))


def resolve(
    candidates: list[Document],
    product_id: str,
    tier: str | None,
    day: date,
    quantity: Decimal | None = None,
) -> Resolved | None:
    """The price that applies to ``product_id`` among ``candidates`` (lists of one currency):
    the tier's lists first, then the default lists; None when no list gives one."""
    kinds: list[tuple[str, bool]] = [(tier, True)] if tier else []
    kinds.append((DEFAULT_TIER, False))
    for wanted, by_tier in kinds:
        usable = [
            doc
            for doc in candidates
            if doc.get("tier", DEFAULT_TIER) == wanted
            and applies_on(doc, day)
            and _usable((doc.get("entries") or {}).get(product_id), quantity)
        ]
        if usable:
            best = max(usable, key=_precedence)
            return Resolved(best, best["entries"][product_id], by_tier)
    return None


def entry_data(entry: Document) -> ev.PriceEntry:
    return ev.PriceEntry(
        product_id=entry["product_id"],
        unit_price=entry["unit_price"],
        min_quantity=entry.get("min_quantity"),
        set_at=entry["set_at"],
        set_by=entry.get("set_by"),
    )


def snapshot(doc: Document) -> ev.PriceListSnapshot:
    return ev.PriceListSnapshot(
        price_list_id=doc["_id"],
        name=doc["name"],
        currency=doc["currency"],
        tier=doc.get("tier") or None,
        active=bool(doc["active"]),
        valid_from=doc.get("valid_from"),
        valid_to=doc.get("valid_to"),
        entry_count=len(doc.get("entries") or {}),
        created_at=doc["created_at"],
        created_by=doc.get("created_by"),
        updated_at=doc["updated_at"],
    )
