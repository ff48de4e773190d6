"""Events of the leads service, on ``crm.leads.v1``: leads (线索), prospects before they are customers,
and the marketing campaigns (市场活动) they come from.

Every event is keyed by the lead id and carries the whole :class:`LeadSnapshot` after the
change, so a consumer keeps a read copy from any single event (apply by ``aggregateversion``).
A lead without an owner is in the lead pool, where reps claim it. Campaign events are keyed by the
campaign id and carry the whole :class:`CampaignSnapshot` the same way.
"""

from __future__ import annotations

from datetime import date, datetime
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


# --- campaigns (市场活动), on the same topic: the leads service owns them ------------------------

CampaignStatus = Literal["planned", "active", "completed", "cancelled"]
CampaignChannel = Literal["exhibition", "online_ads", "content", "referral", "outbound_list", "event", "other"]


class Money(BaseModel):
    amount: str = Field(description="Decimal string with two places, e.g. '120000.00' (never a float).")
    currency: str = Field(description="ISO 4217, e.g. CNY.")


class CampaignSnapshot(BaseModel):
    campaign_id: str
    name: str
    channel: CampaignChannel
    budget: Money
    start_date: date
    end_date: date
    owner_id: str
    department_id: str | None = None
    department_path: str | None = None
    status: CampaignStatus
    cost_total: Money = Field(description="The sum of the cost entries, in the budget's currency.")
    cost_count: int = 0
    created_at: datetime
    created_by: str | None = None
    updated_at: datetime


#: ``date`` under another name, for models with a field called ``date``.
Day = date


class CampaignCost(BaseModel):
    cost_id: str
    amount: Money
    date: Day = Field(description="The day the cost was incurred.")
    note: str | None = None
    recorded_by: str | None = None
    recorded_at: datetime


class CampaignCreated(BaseModel):
    campaign: CampaignSnapshot


class CampaignUpdated(BaseModel):
    campaign: CampaignSnapshot
    changes: list[FieldChange] = Field(description="Each field changed, status included (old and new).")


class CampaignCostAdded(BaseModel):
    campaign: CampaignSnapshot
    cost: CampaignCost


CAMPAIGN_CREATED = define("crm.campaign.created", CampaignCreated, TOPIC, description="A campaign was planned.")
CAMPAIGN_UPDATED = define(
    "crm.campaign.updated",
    CampaignUpdated,
    TOPIC,
    description="A campaign's fields or status changed (planned -> active -> completed / cancelled).",
)
CAMPAIGN_COST_ADDED = define(
    "crm.campaign.cost_added",
    CampaignCostAdded,
    TOPIC,
    description="A cost entry was recorded on a campaign; the snapshot carries the new total.",
)
