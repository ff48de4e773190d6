"""Campaigns (市场活动): what the API takes, the stored shape, status moves and cost totals (no I/O).

Money is a decimal string with two places and an ISO 4217 currency, never a float; a cost is in
the budget's currency and the total is kept on the campaign, recomputed from the entries in the
same write that adds one.
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from crm_leads.domain.segments import SegmentIn, empty
from crm_platform.auth import Principal
from crm_platform.contracts import leads as ev
from crm_platform.errors import Conflict, ValidationFailed
from crm_platform.sortkeys import epoch_ms

Document = dict[str, Any]
LARGEST = Decimal(10) ** 15

SORT_FIELDS = {"created_at": "s.created_at", "start_date": "s.start_date"}
DEFAULT_SORT = "-created_at"


class Channel(StrEnum):
    exhibition = "exhibition"
    online_ads = "online_ads"
    content = "content"
    referral = "referral"
    outbound_list = "outbound_list"
    event = "event"
    other = "other"


class CampaignStatus(StrEnum):
    planned = "planned"
    active = "active"
    completed = "completed"
    cancelled = "cancelled"


MOVES: dict[CampaignStatus, set[CampaignStatus]] = {
    CampaignStatus.planned: {CampaignStatus.active, CampaignStatus.cancelled},
    CampaignStatus.active: {CampaignStatus.completed, CampaignStatus.cancelled},
    CampaignStatus.completed: set(),
    CampaignStatus.cancelled: set(),
}


def _amount(value: str) -> str:
    try:
        number = Decimal(value.strip())
    except InvalidOperation as exc:
        raise ValueError(f"'{value}' is not an amount (a decimal string such as \"1234.50\")") from exc
    if not number.is_finite():
        raise ValueError(f"'{value}' is not an amount")
    if number < 0:
        raise ValueError("must not be negative")
    if number >= LARGEST:
        raise ValueError(f"must be below {LARGEST:,}")
    if number != number.quantize(Decimal("0.01")):
        raise ValueError("at most 2 digits after the point")
    return f"{number.quantize(Decimal('0.01'))}"


def _currency(value: str) -> str:
    if not re.fullmatch(r"[A-Z]{3}", value):
        raise ValueError("an ISO 4217 code such as CNY")
    return value


Amount = Annotated[
    str,
    Field(min_length=1, max_length=40, description='A decimal string, e.g. "120000.00" (a JSON number is refused).'),
    AfterValidator(_amount),
]
Currency = Annotated[str, Field(min_length=3, max_length=3), AfterValidator(_currency)]
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(str.strip)]
Note = Annotated[str, Field(max_length=1000)]


def _not_empty(segment: SegmentIn | None) -> SegmentIn | None:
    if segment is not None and empty(segment.stored()):
        raise ValueError("give at least one tag or filter (or no segment)")
    return segment


class MoneyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Amount
    currency: Currency


class CampaignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    channel: Channel
    budget: MoneyIn
    start_date: date
    end_date: date
    owner_id: Name | None = Field(default=None, description="Default: you.")
    segment: SegmentIn | None = Field(default=None, description="The target segment (customer tags and list filters).")

    @field_validator("segment")
    @classmethod
    def _segment_not_empty(cls, value: SegmentIn | None) -> SegmentIn | None:
        return _not_empty(value)

    @field_validator("end_date")
    @classmethod
    def _not_before_start(cls, value: date, info: ValidationInfo) -> date:
        start = info.data.get("start_date")
        if start is not None and value < start:
            raise ValueError(f"must not be before start_date ({start.isoformat()})")
        return value


class CampaignPatch(BaseModel):
    """Fields to change (only those sent); ``status`` moves it on: planned -> active -> completed, or cancelled."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    channel: Channel | None = None
    budget: MoneyIn | None = None
    start_date: date | None = None
    end_date: date | None = None
    owner_id: Name | None = None
    status: CampaignStatus | None = None
    segment: SegmentIn | None = Field(default=None, description="The target segment; null removes it.")

    @field_validator("segment")
    @classmethod
    def _segment_not_empty(cls, value: SegmentIn | None) -> SegmentIn | None:
        return _not_empty(value)


class CostIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Amount
    currency: Currency | None = Field(default=None, description="Must be the budget's currency (default).")
    date: date
    note: Note | None = None


def sort_keys(doc: Document) -> Document:
    # The start day as the integer 20260301: the embedded store reads an ISO date string as a date
    # and wraps it in a function no index serves (every cursor page would read every campaign).
    start = int(str(doc["start_date"]).replace("-", ""))
    return {"created_at": epoch_ms(doc["created_at"]), "start_date": start, "id": doc["_id"]}


def new_campaign(campaign_id: str, data: CampaignIn, principal: Principal, now: datetime) -> Document:
    doc: Document = {
        "_id": campaign_id,
        "name": data.name,
        "channel": data.channel.value,
        "budget": data.budget.model_dump(),
        "start_date": data.start_date.isoformat(),
        "end_date": data.end_date.isoformat(),
        "owner_id": data.owner_id or principal.user_id,
        "segment": data.segment.stored() if data.segment is not None else None,
        "department_id": principal.department_id,
        "department_path": principal.department_path,
        "status": CampaignStatus.planned.value,
        "costs": [],
        "cost_total": {"amount": "0.00", "currency": data.budget.currency},
        "created_at": now,
        "created_by": principal.user_id,
        "updated_at": now,
    }
    doc["s"] = sort_keys(doc)
    return doc


def apply_patch(doc: Document, patch: CampaignPatch) -> list[ev.FieldChange]:
    """Apply ``patch`` to ``doc``; the changes (old and new). 422/409 for what the rules refuse."""
    values = patch.model_dump(mode="json", include=patch.model_fields_set)
    if "segment" in values:  # as stored: the filters given only (null removes the segment)
        values["segment"] = patch.segment.stored() if patch.segment is not None else None
    for name in ("name", "channel", "budget", "start_date", "end_date", "owner_id", "status"):
        if name in values and values[name] is None:
            raise ValidationFailed.for_field(name, "cannot be cleared")
    if "budget" in values and doc["costs"] and values["budget"]["currency"] != doc["budget"]["currency"]:
        raise ValidationFailed.for_field(
            "budget.currency", f"the campaign has costs in {doc['budget']['currency']}: keep that currency"
        )
    if "status" in values:
        current, to = CampaignStatus(doc["status"]), CampaignStatus(values["status"])
        if to != current and to not in MOVES[current]:
            allowed = ", ".join(sorted(s.value for s in MOVES[current])) or "none: it is closed"
            raise Conflict(f"A campaign that is {current.value} cannot become {to.value} (allowed: {allowed}).")
    start: str = values.get("start_date") or doc["start_date"]
    end: str = values.get("end_date") or doc["end_date"]
    if end < start:
        field = "end_date" if "end_date" in values else "start_date"
        raise ValidationFailed.for_field(field, f"the period would end ({end}) before it starts ({start})")
    changes: list[ev.FieldChange] = []
    for name, new in values.items():
        old = doc.get(name)
        if old != new:
            changes.append(ev.FieldChange(field=name, old=old, new=new))
            doc[name] = new
    if "budget" in values:
        doc["cost_total"]["currency"] = doc["budget"]["currency"]
    return changes


def add_cost(doc: Document, data: CostIn, principal: Principal, now: datetime) -> Document:
    """Record a cost entry and the new total; the entry as stored."""
    currency = doc["budget"]["currency"]
    if data.currency is not None and data.currency != currency:
        raise ValidationFailed.for_field("currency", f"costs are in the budget's currency, {currency}")
    if doc["status"] == CampaignStatus.cancelled.value:
        raise Conflict("The campaign is cancelled: no more costs.")
    cost = {
        "cost_id": str(uuid.uuid4()),
        "amount": {"amount": data.amount, "currency": currency},
        "date": data.date.isoformat(),
        "note": data.note,
        "recorded_by": principal.user_id,
        "recorded_at": now,
    }
    doc["costs"].append(cost)
    total = sum((Decimal(c["amount"]["amount"]) for c in doc["costs"]), Decimal("0"))
    doc["cost_total"] = {"amount": f"{total.quantize(Decimal('0.01'))}", "currency": currency}
    return cost


def snapshot(doc: Document) -> ev.CampaignSnapshot:
    return ev.CampaignSnapshot(
        campaign_id=doc["_id"],
        name=doc["name"],
        channel=doc["channel"],
        budget=ev.Money(**doc["budget"]),
        start_date=doc["start_date"],
        end_date=doc["end_date"],
        owner_id=doc["owner_id"],
        department_id=doc.get("department_id"),
        department_path=doc.get("department_path"),
        status=doc["status"],
        cost_total=ev.Money(**doc["cost_total"]),
        cost_count=len(doc.get("costs") or []),
        segment=ev.CampaignSegment(**doc["segment"]) if doc.get("segment") else None,
        created_at=doc["created_at"],
        created_by=doc.get("created_by"),
        updated_at=doc["updated_at"],
        web_form_enabled=bool(doc.get("web_form")),
    )


def cost_event_data(cost: Document) -> ev.CampaignCost:
    return ev.CampaignCost(
        cost_id=cost["cost_id"],
        amount=ev.Money(**cost["amount"]),
        date=cost["date"],
        note=cost.get("note"),
        recorded_by=cost.get("recorded_by"),
        recorded_at=cost["recorded_at"],
    )
