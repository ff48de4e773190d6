"""Contracts (合同): what the API takes, the number, the approval bands and the status moves (no I/O).

Statuses::

    draft -> under_approval -> signed -> executing -> completed
      ^            |              \\           \\
      `- rejected -'               `-----------`-> terminated (reason)

**Approval by amount bands**: the setting ``CRM_SALES_CONTRACT_APPROVAL_BANDS`` (JSON) maps a
currency (or ``*``, any other currency) to bands ``{"above": "<amount>", "permission": "<perm>"}``.
A contract needs one approval level per band whose ``above`` its amount exceeds, in ascending
order, each by a holder of that band's permission who is not the contract's owner and who approved
no other level of it. Once every level has approved, the contract may be signed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from crm_platform.auth import Principal
from crm_platform.contracts import sales as ev
from crm_platform.errors import Conflict, Forbidden, ValidationFailed
from crm_platform.permissions import Permission
from crm_platform.sortkeys import epoch_ms
from crm_sales.domain import money

Document = dict[str, Any]

NUMBER_DIGITS = 6
STATUSES = ("draft", "under_approval", "signed", "executing", "completed", "terminated")
CLOSED = ("completed", "terminated")
_NUMBER = re.compile(r"^C-(?P<year>[0-9]{4})-(?P<seq>[0-9]{6,})$")
DEFAULT_BANDS = (
    '{"*": [{"above": "0", "permission": "contracts:approve"},'
    ' {"above": "1000000", "permission": "contracts:approve_major"}]}'
)
ANY_CURRENCY = "*"


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip()
    return text or None


def _required(value: str) -> str:
    text = value.strip()
    if not text:
        raise ValueError("must not be blank")
    return text


Text = Annotated[str, Field(max_length=200), AfterValidator(_text)]
Title = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_required)]
Notes = Annotated[str, Field(max_length=4000), AfterValidator(_text)]


class ContractIn(BaseModel):
    """From a won opportunity, an accepted quotation, or directly (customer, amount, currency)."""

    model_config = ConfigDict(extra="forbid")

    title: Title
    opportunity_id: str | None = Field(default=None, max_length=100)
    quotation_id: str | None = Field(default=None, max_length=100)
    customer_id: str | None = Field(default=None, max_length=100)
    amount: str | None = Field(default=None, max_length=40, description="Decimal string above 0.")
    currency: str | None = Field(default=None, max_length=10, examples=["CNY"])
    customer_signatory: Text | None = None
    start_date: date | None = None
    end_date: date | None = None
    signed_document: Text | None = Field(default=None, description="A URL or a document id.")
    notes: Notes | None = None


class ContractPatch(BaseModel):
    """Fields of a draft to change (only those sent)."""

    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    amount: str | None = Field(default=None, max_length=40)
    currency: str | None = Field(default=None, max_length=10)
    customer_signatory: Text | None = None
    start_date: date | None = None
    end_date: date | None = None
    signed_document: Text | None = None
    notes: Notes | None = None


class Comment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str | None = Field(default=None, max_length=2000)


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signed_on: date
    signed_document: Text | None = Field(default=None, description="Required unless the contract has one.")
    comment: str | None = Field(default=None, max_length=2000)


class TerminateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(max_length=2000)


# --- numbers -------------------------------------------------------------------------------------


def format_number(year: int, seq: int) -> str:
    """``C-2026-000123``: the year and the year's sequence (at least six digits)."""
    if seq < 1:
        raise ValueError("a contract number's sequence starts at 1")
    return f"C-{year:04d}-{seq:0{NUMBER_DIGITS}d}"


def parse_number(number: str) -> tuple[int, int]:
    match = _NUMBER.match(number)
    if match is None:
        raise ValueError(f"'{number}' is not a contract number")
    return int(match.group("year")), int(match.group("seq"))


def counter_id(year: int) -> str:
    return f"contract:{year:04d}"


# --- approval bands -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Band:
    above: Decimal
    permission: str


Bands = dict[str, tuple[Band, ...]]


def parse_bands(text: str) -> Bands:
    """The setting's JSON as bands per currency; ValueError saying what is wrong."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(raw, dict) or not raw:
        raise ValueError('a JSON object of currency -> bands, e.g. {"*": [{"above": "0", "permission": ...}]}')
    known = {p.value for p in Permission}
    out: Bands = {}
    for key, bands in raw.items():
        code = key if key == ANY_CURRENCY else _currency_or_error(key)
        if not isinstance(bands, list) or not bands:
            raise ValueError(f"{key}: a non-empty list of bands")
        parsed: list[Band] = []
        for i, band in enumerate(bands):
            if not isinstance(band, dict) or set(band) != {"above", "permission"}:
                raise ValueError(f"{key}[{i}]: an object with exactly 'above' and 'permission'")
            try:
                above = Decimal(str(band["above"]))
            except InvalidOperation as exc:
                raise ValueError(f"{key}[{i}].above: '{band['above']}' is not a decimal amount") from exc
            if not above.is_finite() or above < 0:
                raise ValueError(f"{key}[{i}].above: must be 0 or more")
            if band["permission"] not in known:
                raise ValueError(f"{key}[{i}].permission: '{band['permission']}' is not a permission")
            if parsed and above <= parsed[-1].above:
                raise ValueError(f"{key}[{i}].above: bands must ascend")
            parsed.append(Band(above, str(band["permission"])))
        out[code] = tuple(parsed)
    return out


def _currency_or_error(raw: str) -> str:
    try:
        return money.currency_code(raw)
    except money.InvalidMoney as exc:
        raise ValueError(str(exc)) from exc


def levels_for(bands: Bands, amount: str, currency_code: str) -> list[Document]:
    """The approval levels a contract of ``amount`` needs (none when no band applies)."""
    chosen = bands.get(currency_code, bands.get(ANY_CURRENCY, ()))
    value = Decimal(amount)
    return [
        {
            "level": i + 1,
            "permission": band.permission,
            "above": format(band.above, "f"),
            "approved_by": None,
            "approved_at": None,
            "comment": None,
        }
        for i, band in enumerate(b for b in chosen if value > b.above)
    ]


def pending_level(doc: Document) -> Document | None:
    for level in (doc.get("approval") or {}).get("levels") or []:
        if level.get("approved_by") is None:
            return dict(level)
    return None


def approval_complete(doc: Document) -> bool:
    return doc.get("approval") is not None and pending_level(doc) is None


# --- input checks ---------------------------------------------------------------------------------


def currency(raw: str, field: str = "currency") -> str:
    try:
        return money.currency_code(raw)
    except money.InvalidMoney as exc:
        raise ValidationFailed.for_field(field, str(exc)) from exc


def amount(raw: str, currency_code: str, field: str = "amount") -> str:
    """A decimal string above 0 quantized to the currency."""
    try:
        value = money.quantize(raw, currency_code)
    except money.InvalidMoney as exc:
        raise ValidationFailed.for_field(field, str(exc)) from exc
    if money.to_minor(value, currency_code) <= 0:
        raise ValidationFailed.for_field(field, "must be more than 0")
    return value


def check_dates(start: date | None, end: date | None) -> None:
    if start is not None and end is not None and end < start:
        raise ValidationFailed.for_field("end_date", f"{end.isoformat()} is before the start_date {start.isoformat()}")


# --- the document ---------------------------------------------------------------------------------


def new_contract(
    contract_id: str,
    data: ContractIn,
    *,
    customer: Document,
    amount_text: str,
    currency_code: str,
    our_entity: str,
    principal: Principal,
    now: datetime,
) -> Document:
    """A draft without its number (see :func:`numbered`)."""
    return {
        "_id": contract_id,
        "status": "draft",
        "title": data.title,
        "customer_id": customer["_id"],
        "customer_name": customer.get("name"),
        "customer_signatory": data.customer_signatory,
        "our_entity": our_entity,
        "opportunity_id": data.opportunity_id,
        "quotation_id": data.quotation_id,
        "amount": amount_text,
        "amount_minor": money.to_minor(amount_text, currency_code),
        "currency": currency_code,
        "start_date": data.start_date.isoformat() if data.start_date else None,
        "end_date": data.end_date.isoformat() if data.end_date else None,
        "signed_document": data.signed_document,
        "signed_on": None,
        "notes": data.notes,
        "owner_id": principal.user_id,
        "department": principal.department_id,
        "department_path": principal.department_path,
        "approval": None,
        "rejection": None,
        "termination": None,
        "live": True,
        "s": {"created": epoch_ms(now), "id": contract_id},
        "created_at": now,
        "created_by": principal.user_id,
        "updated_at": now,
        "updated_by": principal.user_id,
    }


def numbered(doc: Document, year: int, seq: int) -> Document:
    return {**doc, "number": format_number(year, seq), "year": year, "seq": seq}


def is_owner(principal: Principal, doc: Document) -> bool:
    return principal.user_id in (doc.get("owner_id"), doc.get("created_by"))


#: action -> (statuses it starts from, status it leads to)
MOVES: dict[str, tuple[tuple[str, ...], str]] = {
    "submit": (("draft",), "under_approval"),
    "approve": (("under_approval",), "under_approval"),
    "reject": (("under_approval",), "draft"),
    "sign": (("under_approval",), "signed"),
    "start": (("signed",), "executing"),
    "complete": (("executing",), "completed"),
    "terminate": (("signed", "executing"), "terminated"),
}


class StatusConflict(Conflict):
    code, title = "contract-status", "The contract's status does not allow this"


def check_move(doc: Document, action: str) -> str:
    """The status ``action`` leads to from ``doc``; 409 naming why when it may not."""
    starts, target = MOVES[action]
    status = str(doc["status"])
    extra = {"status": status, "action": action}
    if status not in starts:
        raise StatusConflict(
            f"Cannot {action} a contract that is {status} (only from {', '.join(starts)}).",
            extra={**extra, "reason": "status"},
        )
    if action in ("approve", "reject") and pending_level(doc) is None:
        raise StatusConflict(
            f"Cannot {action}: every approval level has approved already; sign it.",
            extra={**extra, "reason": "approved"},
        )
    if action == "sign" and not approval_complete(doc):
        level = pending_level(doc) or {}
        raise StatusConflict(
            f"Cannot sign: approval level {level.get('level')} ({level.get('permission')}) has not approved yet.",
            extra={**extra, "reason": "approval-pending"},
        )
    return target


def check_approver(principal: Principal, doc: Document, action: str) -> Document:
    """The level the caller decides on; 403 for one's own contract, a missing permission, or a
    second level by the same person."""
    if is_owner(principal, doc):
        raise Forbidden(f"You cannot {action} your own contract: another approver decides on it.")
    level = pending_level(doc)
    assert level is not None  # check_move ran first
    if not principal.holds(level["permission"]):
        raise Forbidden(f"Approval level {level['level']} of this contract needs the permission {level['permission']}.")
    earlier = [lv for lv in doc["approval"]["levels"] if lv.get("approved_by") == principal.user_id]
    if action == "approve" and earlier:
        raise Forbidden(f"You approved level {earlier[0]['level']} already: another approver decides this level.")
    return level


def check_editable(doc: Document) -> None:
    if doc["status"] != "draft":
        raise StatusConflict(
            f"Only a draft can be changed; this contract is {doc['status']}.",
            extra={"status": doc["status"], "action": "update", "reason": "status"},
        )


def _iso(value: Any) -> date | None:
    return date.fromisoformat(value) if value else None


def snapshot(doc: Document, version: int) -> ev.ContractSnapshot:
    totals = doc.get("totals") or {}
    return ev.ContractSnapshot(
        contract_id=doc["_id"],
        number=doc["number"],
        title=doc.get("title"),
        customer_id=doc["customer_id"],
        opportunity_id=doc.get("opportunity_id"),
        quotation_id=doc.get("quotation_id"),
        owner_id=doc["owner_id"],
        department=doc.get("department"),
        department_path=doc.get("department_path"),
        amount=doc["amount"],
        currency=doc["currency"],
        status=doc["status"],
        start_date=_iso(doc.get("start_date")),
        end_date=_iso(doc.get("end_date")),
        signed_on=_iso(doc.get("signed_on")),
        received=totals.get("received"),
        outstanding=totals.get("outstanding"),
        credit=totals.get("credit"),
        version=version,
    )
