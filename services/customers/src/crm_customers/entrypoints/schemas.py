"""What the HTTP API returns."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from crm_customers.domain.model import Name, ProfileFields, Tag
from crm_platform.clock import as_utc
from crm_platform.contracts.customers import Address


class ContactOut(BaseModel):
    contact_id: str
    name: str
    role: str | None = None
    title: str | None = None
    phones: list[str] = []
    emails: list[str] = []
    is_primary: bool = False
    notes: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    custom: dict[str, Any] = Field(
        default_factory=dict, description="Custom field values by key (GET /v1/fields/contacts for the definitions)."
    )


class LockOut(BaseModel):
    by: str
    at: datetime
    reason: str | None = None


class DeletedOut(BaseModel):
    by: str
    at: datetime
    reason: str | None = None


class Freshness(BaseModel):
    """How fresh the record is: the seeds ask that every record shows it."""

    days_since_update: int
    days_since_follow_up: int | None = Field(description="None when never followed up.")


class CustomerOut(BaseModel):
    id: str
    version: int
    kind: str
    name: str
    uscc: str | None = None
    industry: str | None = None
    size: str | None = None
    address: Address | None = None
    source: str | None = None
    tier: str | None = None
    lifecycle_stage: str | None = None
    tags: list[str] = []
    phones: list[str] = []
    emails: list[str] = []
    website: str | None = None
    description: str | None = None
    contacts: list[ContactOut] = []
    owner_id: str | None = None
    department_id: str | None = None
    department_path: str | None = None
    owner_since: datetime | None = None
    in_pool: bool = False
    pool_since: datetime | None = None
    previous_owner_id: str | None = None
    release_reason: str | None = None
    locked: LockOut | None = None
    status: str
    deleted: DeletedOut | None = None
    merged_into: str | None = None
    merged_from: list[str] = []
    lead_ids: list[str] = Field(
        default_factory=list, description="The leads converted into this customer or linked to it."
    )
    created_at: datetime
    created_by: str | None = None
    updated_at: datetime
    updated_by: str | None = None
    last_followed_up_at: datetime | None = None
    last_followed_up_by: str | None = None
    custom: dict[str, Any] = Field(
        default_factory=dict, description="Custom field values by key (GET /v1/fields/customers for the definitions)."
    )
    freshness: Freshness


def customer_out(doc: dict[str, Any], now: datetime) -> CustomerOut:
    updated = as_utc(doc["updated_at"])
    followed = doc.get("last_followed_up_at")
    fields = {k: v for k, v in doc.items() if k in CustomerOut.model_fields}
    return CustomerOut(
        **fields,
        id=doc["_id"],
        freshness=Freshness(
            days_since_update=max((now - updated).days, 0),
            days_since_follow_up=None if followed is None else max((now - as_utc(followed)).days, 0),
        ),
    )


class CustomerPage(BaseModel):
    items: list[CustomerOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")
    total: int | None = Field(default=None, description="Only with ?include_total=true (counting costs time).")


class AssignIn(BaseModel):
    owner_id: str = Field(min_length=1, max_length=100)
    department_id: str | None = Field(default=None, max_length=100)
    department_path: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="The new owner's department path, e.g. /hq/east. Taken from the directory when omitted "
        "(required only for owners the directory does not know).",
    )
    reason: str | None = Field(default=None, max_length=500)


BULK_ASSIGN_MAX = 100


class BulkAssignIn(AssignIn):
    model_config = ConfigDict(extra="forbid")

    customer_ids: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        min_length=1, max_length=BULK_ASSIGN_MAX, description=f"At most {BULK_ASSIGN_MAX}; repeats count once."
    )


class BulkAssignItem(BaseModel):
    customer_id: str
    outcome: Literal["assigned", "unchanged", "failed"]
    status: int = Field(description="What assigning this customer alone would have answered (200, 404, 409, 423 ...).")
    detail: str | None = Field(default=None, description="Why it failed.")


class BulkAssignOut(BaseModel):
    owner_id: str
    assigned: int
    unchanged: int
    failed: int
    items: list[BulkAssignItem]


class ReasonIn(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class OptionalReasonIn(BaseModel):
    reason: str | None = Field(default=None, max_length=500)


class MergeIn(BaseModel):
    duplicate_id: str = Field(min_length=1, max_length=100, description="The customer that disappears into this one.")


LOOKUP_MAX = 100


class LookupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        min_length=1, max_length=LOOKUP_MAX, description=f"Customer ids, at most {LOOKUP_MAX}; repeats count once."
    )


class Lookup(BaseModel):
    items: list[CustomerOut] = Field(description="The customers you may see, in the order asked.")
    missing: list[str] = Field(
        description="Ids that are not customers you may see (unknown, purged, or not yours to see: not told apart)."
    )


class DuplicateCheckIn(BaseModel):
    kind: str | None = Field(default=None, pattern="^(company|person)$")
    name: str | None = Field(default=None, max_length=200)
    uscc: str | None = None
    phones: list[str] = []
    emails: list[str] = []


class SavedViewIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    query: dict[str, str] = Field(description="The list's query parameters: filters, sort.")


class SavedViewOut(SavedViewIn):
    id: str
    created_at: datetime


class NeighbourOut(BaseModel):
    id: str = Field(validation_alias="_id")
    name: str


class Neighbours(BaseModel):
    previous: NeighbourOut | None
    next: NeighbourOut | None


class CopyIn(ProfileFields):
    """The copy's own name, and any profile field to set differently from the original."""

    name: Name
    tags: Annotated[list[Tag], Field(max_length=50)] | None = None
