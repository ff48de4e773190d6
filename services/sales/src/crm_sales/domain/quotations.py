"""Quotations (报价单): what the API takes, the totals, the number, the revisions and the status
moves (no I/O).

Money is computed with :class:`~decimal.Decimal` and quantized to the currency's minor unit (half
up) per line: ``gross = quantity x unit price``, ``discount = gross x discount% / 100``, ``amount =
gross - discount``; the quotation's ``subtotal`` is the sum of the gross amounts, ``discount_total``
the sum of the discounts and ``total = subtotal - discount_total`` (so the total is the sum of the
lines' amounts to the cent). Statuses::

    draft -> pending_approval -> approved -> sent -> accepted | declined
         \\                    -> rejected
          `-> sent (when no line's discount exceeds the approval threshold)

An open quotation (draft, pending_approval, approved, sent) past its ``valid_until`` is shown as
``expired`` (computed on read) and moves no further; a new revision with a later date revives it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from crm_platform.auth import Principal
from crm_platform.contracts import sales as ev
from crm_platform.errors import Conflict, ValidationFailed
from crm_sales.domain import money
from crm_sales.domain.price_lists import normalise_tier

Document = dict[str, Any]

MAX_LINES = 200
MAX_REVISIONS = 100  # previous revisions are kept inside the quotation's own document
NUMBER_DIGITS = 6
DISCOUNT_PLACES = 2
OPEN = ("draft", "pending_approval", "approved", "sent")
FINAL = ("accepted",)
STATUSES = ("draft", "pending_approval", "approved", "rejected", "sent", "accepted", "declined", "expired")
#: Copied into a kept revision (what the customer was offered under that revision).
CONTENT_FIELDS = (
    "revision",
    "status",
    "customer_id",
    "customer_name",
    "opportunity_id",
    "currency",
    "tier",
    "valid_until",
    "notes",
    "lines",
    "subtotal",
    "discount_total",
    "total",
    "needs_approval",
    "approval",
    "sent_at",
    "answer",
    "updated_at",
    "updated_by",
)
_NUMBER = re.compile(r"^Q-(?P<year>[0-9]{4})-(?P<seq>[0-9]{6,})$")


# --- input ---------------------------------------------------------------------------------------


def _quantity(value: str) -> str:
    try:
        return money.quantity(value)
    except money.InvalidMoney as exc:
        raise ValueError(str(exc)) from exc


def discount_percent(value: str) -> str:
    """A percentage 0..100 as a normalised decimal string (at most 2 decimals)."""
    text = value.strip()
    match = re.fullmatch(r"([0-9]{1,3})(?:\.([0-9]*))?", text)
    if match is None:
        raise ValueError(f"'{value}' is not a percentage; write a decimal between 0 and 100 such as '12.5'")
    if len((match.group(2) or "").rstrip("0")) > DISCOUNT_PLACES:
        raise ValueError(f"at most {DISCOUNT_PLACES} decimals (got '{value}')")
    number = Decimal(text)
    if number > 100:
        raise ValueError("at most 100")
    return "0" if number == 0 else format(number.normalize(), "f")


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip()
    return text or None


Quantity = Annotated[
    str,
    Field(min_length=1, max_length=40, examples=["10"], description="Decimal string above 0."),
    AfterValidator(_quantity),
]
Percent = Annotated[
    str,
    Field(min_length=1, max_length=20, examples=["5"], description="Decimal string 0..100."),
    AfterValidator(discount_percent),
]
Notes = Annotated[str, Field(max_length=4000), AfterValidator(_text)]


class LineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: str = Field(min_length=1, max_length=100)
    quantity: Quantity
    unit_price: str | None = Field(
        default=None,
        max_length=40,
        description="Decimal string in the quotation's currency; absent: the price lists' price today.",
    )
    discount_percent: Percent = "0"


class QuotationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(min_length=1, max_length=100)
    opportunity_id: str | None = Field(default=None, max_length=100)
    currency: str = Field(min_length=1, max_length=10, examples=["CNY"])
    tier: str | None = Field(default=None, max_length=40, description="The price lists' tier; absent: default lists.")
    valid_until: date = Field(description="Last day the offer holds (today or later).")
    notes: Notes | None = None
    lines: list[LineIn] = Field(min_length=1, max_length=MAX_LINES)


class QuotationPatch(BaseModel):
    """Fields of a draft to change (only those sent); ``lines`` replaces every line."""

    model_config = ConfigDict(extra="forbid")

    opportunity_id: str | None = Field(default=None, max_length=100)
    tier: str | None = Field(default=None, max_length=40)
    valid_until: date | None = None
    notes: Notes | None = None
    lines: list[LineIn] | None = Field(default=None, min_length=1, max_length=MAX_LINES)


class Comment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str | None = Field(default=None, max_length=2000)


# --- numbers -------------------------------------------------------------------------------------


def format_number(year: int, seq: int) -> str:
    """``Q-2026-000123``: the year and the year's sequence (at least six digits)."""
    if seq < 1:
        raise ValueError("a quotation number's sequence starts at 1")
    return f"Q-{year:04d}-{seq:0{NUMBER_DIGITS}d}"


def parse_number(number: str) -> tuple[int, int]:
    match = _NUMBER.match(number)
    if match is None:
        raise ValueError(f"'{number}' is not a quotation number")
    return int(match.group("year")), int(match.group("seq"))


def counter_id(year: int) -> str:
    return f"quotation:{year:04d}"


# --- lines and totals ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PricedLine:
    """A line whose product and unit price are known (the price given or resolved)."""

    product: Document
    quantity: str
    unit_price: str
    discount_percent: str


def _q(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-money.CURRENCY_EXPONENTS[currency]), rounding=ROUND_HALF_UP)


def _s(amount: Decimal, currency: str) -> str:
    return money.format_minor(int(_q(amount, currency).scaleb(money.CURRENCY_EXPONENTS[currency])), currency)


def line_doc(line: PricedLine, currency: str) -> Document:
    gross = _q(Decimal(line.quantity) * Decimal(line.unit_price), currency)
    discount = _q(gross * Decimal(line.discount_percent) / 100, currency)
    return {
        "product_id": line.product["_id"],
        "sku": line.product["sku"],
        "name": line.product["name"],
        "unit": line.product["unit"],
        "quantity": line.quantity,
        "unit_price": money.quantize(line.unit_price, currency),
        "discount_percent": line.discount_percent,
        "gross": _s(gross, currency),
        "discount": _s(discount, currency),
        "amount": _s(gross - discount, currency),
    }


def totals(lines: list[Document], currency: str) -> Document:
    subtotal = sum((Decimal(line["gross"]) for line in lines), Decimal(0))
    discount = sum((Decimal(line["discount"]) for line in lines), Decimal(0))
    return {
        "subtotal": _s(subtotal, currency),
        "discount_total": _s(discount, currency),
        "total": _s(subtotal - discount, currency),
        "total_minor": money.to_minor(_s(subtotal - discount, currency), currency),
    }


def needs_approval(lines: list[Document], threshold: Decimal) -> bool:
    """Some line's discount exceeds the threshold (percent): sending needs a manager's approval."""
    return any(Decimal(line["discount_percent"]) > threshold for line in lines)


def set_lines(doc: Document, lines: list[PricedLine], threshold: Decimal) -> None:
    doc["lines"] = [line_doc(line, doc["currency"]) for line in lines]
    doc.update(totals(doc["lines"], doc["currency"]))
    doc["needs_approval"] = needs_approval(doc["lines"], threshold)


def currency(raw: str) -> str:
    try:
        return money.currency_code(raw)
    except money.InvalidMoney as exc:
        raise ValidationFailed.for_field("currency", str(exc)) from exc


def tier(raw: str | None) -> str | None:
    try:
        return normalise_tier(raw)
    except ValueError as exc:
        raise ValidationFailed.for_field("tier", str(exc)) from exc


def unit_price(raw: str, currency_code: str, index: int) -> str:
    try:
        return money.quantize(raw, currency_code)
    except money.InvalidMoney as exc:
        raise ValidationFailed.for_field(f"lines[{index}].unit_price", str(exc)) from exc


def check_valid_until(valid_until: date, today: date) -> None:
    if valid_until < today:
        raise ValidationFailed.for_field(
            "valid_until", f"{valid_until.isoformat()} is in the past (today is {today.isoformat()})"
        )


# --- the document ---------------------------------------------------------------------------------


def new_quotation(
    quotation_id: str,
    data: QuotationIn,
    currency_code: str,
    tier_code: str | None,
    customer: Document,
    lines: list[PricedLine],
    threshold: Decimal,
    principal: Principal,
    now: datetime,
) -> Document:
    """The first revision, a draft, without its number (see :func:`numbered`)."""
    doc: Document = {
        "_id": quotation_id,
        "revision": 1,
        "status": "draft",
        "customer_id": customer["_id"],
        "customer_name": customer.get("name"),
        "opportunity_id": _text(data.opportunity_id),
        "currency": currency_code,
        "tier": tier_code,
        "valid_until": data.valid_until.isoformat(),
        "notes": data.notes,
        "owner_id": principal.user_id,
        "department_path": principal.department_path,
        "approval": None,
        "sent_at": None,
        "answer": None,
        "previous": [],
        "created_at": now,
        "created_by": principal.user_id,
        "updated_at": now,
        "updated_by": principal.user_id,
    }
    set_lines(doc, lines, threshold)
    return doc


def numbered(doc: Document, year: int, seq: int) -> Document:
    return {**doc, "number": format_number(year, seq), "year": year, "seq": seq}


def shown_status(doc: Document, today: date) -> str:
    """The status as the API shows it: an open quotation past valid_until is ``expired``."""
    status = str(doc["status"])
    if status in OPEN and date.fromisoformat(doc["valid_until"]) < today:
        return "expired"
    return status


def is_owner(principal: Principal, doc: Document) -> bool:
    return principal.user_id in (doc.get("owner_id"), doc.get("created_by"))


#: action -> (statuses it starts from, status it leads to)
MOVES: dict[str, tuple[tuple[str, ...], str]] = {
    "submit": (("draft",), "pending_approval"),
    "approve": (("pending_approval",), "approved"),
    "reject": (("pending_approval",), "rejected"),
    "send": (("draft", "approved"), "sent"),
    "accept": (("sent",), "accepted"),
    "decline": (("sent",), "declined"),
}


class StatusConflict(Conflict):
    code, title = "quotation-status", "The quotation's status does not allow this"


def check_move(doc: Document, action: str, today: date) -> str:
    """The status ``action`` leads to from ``doc``; 409 naming why when it may not."""
    starts, target = MOVES[action]
    shown = shown_status(doc, today)
    extra = {"status": shown, "action": action}
    if shown == "expired":
        raise StatusConflict(
            f"Cannot {action}: the quotation expired on {doc['valid_until']} (valid_until); "
            "revise it with a later valid_until first.",
            extra={**extra, "reason": "expired"},
        )
    if shown not in starts:
        raise StatusConflict(
            f"Cannot {action} a quotation that is {shown} (only from {', '.join(starts)}).",
            extra={**extra, "reason": "status"},
        )
    if action == "submit" and not doc.get("needs_approval"):
        raise StatusConflict(
            "No line's discount exceeds the approval threshold: send it directly.",
            extra={**extra, "reason": "approval-not-needed"},
        )
    if action == "send" and shown == "draft" and doc.get("needs_approval"):
        raise StatusConflict(
            "A line's discount exceeds the approval threshold: submit it for a manager's approval first.",
            extra={**extra, "reason": "approval-required"},
        )
    return target


def check_editable(doc: Document, today: date) -> None:
    shown = shown_status(doc, today)
    if shown != "draft":
        raise StatusConflict(
            f"Only a draft can be changed; this quotation is {shown}: revise it (POST /revise) for a new draft.",
            extra={"status": shown, "action": "update", "reason": "expired" if shown == "expired" else "status"},
        )


def check_revisable(doc: Document, today: date) -> None:
    shown = shown_status(doc, today)
    if shown in ("draft", "pending_approval") or shown in FINAL:
        why = {
            "draft": "it is a draft: change it with PATCH",
            "pending_approval": "it waits for approval: have it approved or rejected first",
            "accepted": "the customer accepted it: it is final",
        }[shown]
        raise StatusConflict(
            f"Cannot revise the quotation: {why}.", extra={"status": shown, "action": "revise", "reason": "status"}
        )


def content(doc: Document) -> Document:
    return {name: doc.get(name) for name in CONTENT_FIELDS}


def start_revision(doc: Document, now: datetime, actor: str) -> None:
    """Keep the current revision (read-only, in ``previous``) and make the next one a draft."""
    if int(doc["revision"]) >= MAX_REVISIONS:
        raise Conflict(f"A quotation has at most {MAX_REVISIONS} revisions; start a new quotation.")
    kept = content(doc)
    kept["superseded_at"] = now
    doc["previous"] = [*(doc.get("previous") or []), kept]
    doc["revision"] = int(doc["revision"]) + 1
    doc["status"] = "draft"
    doc["approval"] = None
    doc["sent_at"] = None
    doc["answer"] = None
    doc["updated_at"] = now
    doc["updated_by"] = actor


def snapshot(doc: Document) -> ev.QuotationSnapshot:
    return ev.QuotationSnapshot(
        quotation_id=doc["_id"],
        number=doc["number"],
        revision=int(doc["revision"]),
        status=doc["status"],
        customer_id=doc["customer_id"],
        customer_name=doc.get("customer_name"),
        opportunity_id=doc.get("opportunity_id"),
        currency=doc["currency"],
        tier=doc.get("tier"),
        valid_until=date.fromisoformat(doc["valid_until"]),
        notes=doc.get("notes"),
        lines=[ev.QuotationLine(**line) for line in doc["lines"]],
        subtotal=doc["subtotal"],
        discount_total=doc["discount_total"],
        total=doc["total"],
        needs_approval=bool(doc.get("needs_approval")),
        owner_id=doc["owner_id"],
        department_path=doc.get("department_path"),
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
    )
