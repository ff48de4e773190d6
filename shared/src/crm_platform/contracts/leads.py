"""Events of the leads service, on ``crm.leads.v1``: leads (线索), prospects before they are customers.

Every event is keyed by the lead id and carries the whole :class:`LeadSnapshot` after the
change, so a consumer keeps a read copy from any single event (apply by ``aggregateversion``).
A lead without an owner is in the lead pool, where reps claim it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from crm_platform.events import define

TOPIC = "crm.leads.v1"

LeadStatus = Literal["new", "contacted", "qualified", "disqualified"]


class LeadSnapshot(BaseModel):
    lead_id: str
    company_name: str
    contact_name: str | None = None
    phones: list[str] = Field(default_factory=list, description="E.164.")
    emails: list[str] = Field(default_factory=list, description="Lower-cased.")
    source: str | None = None
    campaign_id: str | None = Field(default=None, description="The campaign the lead came from, if any.")
    region: str | None = None
    industry: str | None = None
    owner_id: str | None = Field(default=None, description="None: the lead is in the lead pool.")
    department_id: str | None = None
    department_path: str | None = None
    status: LeadStatus
    disqualified_reason: str | None = None
    notes: str | None = None
    deleted: bool = False
    created_at: datetime
    created_by: str | None = None
    updated_at: datetime


class FieldChange(BaseModel):
    field: str
    old: Any = None
    new: Any = None


class LeadCreated(BaseModel):
    lead: LeadSnapshot


class LeadUpdated(BaseModel):
    lead: LeadSnapshot
    changes: list[FieldChange]


class LeadStatusChanged(BaseModel):
    lead: LeadSnapshot
    from_status: LeadStatus
    to_status: LeadStatus
    reason: str | None = Field(default=None, description="Why it was disqualified (required then).")


class LeadOwnerChanged(BaseModel):
    lead: LeadSnapshot
    previous_owner_id: str | None
    owner_id: str | None
    how: Literal["claimed", "released", "assigned"]
    reason: str | None = None


class LeadDeleted(BaseModel):
    lead: LeadSnapshot


LEAD_CREATED = define("crm.lead.created", LeadCreated, TOPIC, description="A lead was entered.")
LEAD_UPDATED = define(
    "crm.lead.updated", LeadUpdated, TOPIC, description="A lead's fields changed (each change with old and new)."
)
LEAD_STATUS_CHANGED = define(
    "crm.lead.status_changed",
    LeadStatusChanged,
    TOPIC,
    description="A lead moved on: new -> contacted -> qualified, or disqualified (with a reason).",
)
LEAD_OWNER_CHANGED = define(
    "crm.lead.owner_changed",
    LeadOwnerChanged,
    TOPIC,
    description="A lead changed hands: claimed from the lead pool, released to it (with a reason), or assigned.",
)
LEAD_DELETED = define("crm.lead.deleted", LeadDeleted, TOPIC, description="A lead was deleted.")
