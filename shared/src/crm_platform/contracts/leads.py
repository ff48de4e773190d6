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

#: ``converting`` while the customer (and opportunity) a conversion asked for are being made by their
#: own services; ``converted`` once they are (the lead then links to them and changes no more).
LeadStatus = Literal["new", "contacted", "qualified", "disqualified", "converting", "converted"]


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
    # Added in schema 1 without a version bump (additive): what a conversion made of the lead
    # (None before it is converted, and in events published before conversion existed).
    customer_id: str | None = Field(default=None, description="The customer the lead became or was linked to.")
    contact_id: str | None = Field(default=None, description="The contact made from the lead, if any.")
    opportunity_id: str | None = Field(default=None, description="The opportunity made from the lead, if any.")
    # Added in schema 1 without a version bump (additive): follow-ups logged on the lead (interactions
    # with its lead_id, from crm.interactions.v1), each counted once.
    followup_count: int = Field(default=0, description="How many follow-ups were logged on the lead.")
    last_followup_at: datetime | None = Field(default=None, description="When the latest follow-up happened.")


class FieldChange(BaseModel):
    field: str
    old: Any = None
    new: Any = None


class LeadCreated(BaseModel):
    lead: LeadSnapshot
    # Added in schema 1 without a version bump (additive): how the lead came in (None: by the API,
    # and in events published before it existed).
    via: Literal["import", "web_form"] | None = Field(
        default=None, description="'import': a CSV import; 'web_form': the public web-to-lead form; None: the API."
    )


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
    how: Literal["claimed", "released", "assigned", "recycled"] = Field(
        description="'recycled' (added without a version bump): the pool's rules released a lead nobody worked."
    )
    reason: str | None = None


class LeadDeleted(BaseModel):
    lead: LeadSnapshot


class LeadFollowedUp(BaseModel):
    lead: LeadSnapshot = Field(description="With the new followup_count and last_followup_at.")
    interaction_id: str
    author_id: str | None = None
    channel: str | None = None
    occurred_at: datetime


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
LEAD_FOLLOWED_UP = define(
    "crm.lead.followed_up",
    LeadFollowedUp,
    TOPIC,
    description="A follow-up (an interaction on crm.interactions.v1 with this lead_id) was counted on the lead, "
    "once per interaction.",
)


# --- conversion: a qualified lead becomes a customer + contact (+ opportunity) ------------------
#
# The leads service never writes another service's database. It asks by events, and each step's
# owner answers on its own topic:
#
# 1. ``crm.lead.conversion_requested`` (leads): the lead is ``converting``; ``conversion`` says what
#    to make, with every id chosen up front (so a redelivered command makes nothing twice).
# 2. The customers service creates the customer (``crm.customer.created`` with ``via="lead"`` and
#    ``lead_id``) and the contact, or, for ``existing_customer``, adds the contact to that customer;
#    then it answers ``crm.customer.lead_linked`` (done) or ``crm.customer.lead_refused`` (why not).
# 3. With an opportunity asked for, the leads service publishes ``crm.lead.conversion_progressed``
#    (step ``customer``); the pipeline service creates the opportunity (``crm.opportunity.created``,
#    its snapshot's ``lead_id`` set) or answers ``crm.opportunity.lead_refused``.
# 4. The leads service ends it: ``crm.lead.converted`` (the lead links to what it became), or
#    ``crm.lead.conversion_failed`` (the lead is ``qualified`` again; what was made stays made).


class ConversionContact(BaseModel):
    contact_id: str = Field(description="Chosen by the leads service; the customers service creates it under this id.")
    name: str
    title: str | None = None
    phones: list[str] = Field(default_factory=list, description="E.164.")
    emails: list[str] = Field(default_factory=list, description="Lower-cased.")


class ConversionOpportunity(BaseModel):
    opportunity_id: str = Field(
        description="Chosen by the leads service; the pipeline service creates it under this id."
    )
    name: str
    amount: str | None = Field(default=None, description="Decimal string, e.g. '125000.00' (never a float).")
    currency: str = "CNY"
    expected_close_date: date | None = None
    pipeline_id: str | None = Field(default=None, description="None: the default pipeline.")


class Conversion(BaseModel):
    conversion_id: str = Field(description="One per attempt: '<lead id>:<attempt number>'.")
    customer_id: str = Field(description="The customer to create under this id, or the existing one to link to.")
    existing_customer: bool = Field(description="True: link to customer_id (add the contact), create nothing else.")
    customer_kind: Literal["company", "person"] = "company"
    customer_name: str
    phones: list[str] = Field(default_factory=list, description="The new customer's phones (E.164).")
    emails: list[str] = Field(default_factory=list, description="The new customer's emails.")
    industry: str | None = None
    region: str | None = None
    source: str | None = None
    campaign_id: str | None = None
    owner_id: str = Field(description="Who owns what is made: the lead's owner, or whom the converter named.")
    department_id: str | None = None
    department_path: str | None = None
    contact: ConversionContact | None = None
    opportunity: ConversionOpportunity | None = None
    requested_by: str
    requested_at: datetime


class LeadConversionRequested(BaseModel):
    lead: LeadSnapshot
    conversion: Conversion


class LeadConversionProgressed(BaseModel):
    lead: LeadSnapshot
    conversion: Conversion
    step: Literal["customer"] = Field(
        description="The step that is done: 'customer' (customer and contact made or linked)."
    )
    customer_id: str
    contact_id: str | None = None


class LeadConverted(BaseModel):
    lead: LeadSnapshot = Field(description="Status converted, with customer_id, contact_id and opportunity_id set.")
    conversion_id: str
    customer_id: str
    contact_id: str | None = None
    opportunity_id: str | None = None
    existing_customer: bool


class LeadConversionFailed(BaseModel):
    lead: LeadSnapshot = Field(description="Status qualified again.")
    conversion_id: str
    step: Literal["customer", "opportunity"]
    reason: str
    errors: list[dict[str, Any]] = Field(
        default_factory=list, description="Field errors as the refusing service gave them."
    )


LEAD_CONVERSION_REQUESTED = define(
    "crm.lead.conversion_requested",
    LeadConversionRequested,
    TOPIC,
    description="A qualified lead is being converted: the customers (and pipeline) services are asked to make "
    "what `conversion` names, under the ids it gives.",
)
LEAD_CONVERSION_PROGRESSED = define(
    "crm.lead.conversion_progressed",
    LeadConversionProgressed,
    TOPIC,
    description="A conversion's customer step is done; the pipeline service is asked for the opportunity.",
)
LEAD_CONVERTED = define(
    "crm.lead.converted",
    LeadConverted,
    TOPIC,
    description="A lead became a customer (+ contact, + opportunity) or was linked to an existing customer.",
)
LEAD_CONVERSION_FAILED = define(
    "crm.lead.conversion_failed",
    LeadConversionFailed,
    TOPIC,
    description="A conversion was refused by the service of one step (reason and field errors); the lead is "
    "qualified again.",
)


# --- campaigns (市场活动), on the same topic: the leads service owns them ------------------------

CampaignStatus = Literal["planned", "active", "completed", "cancelled"]
CampaignChannel = Literal["exhibition", "online_ads", "content", "referral", "outbound_list", "event", "other"]


class Money(BaseModel):
    amount: str = Field(description="Decimal string with two places, e.g. '120000.00' (never a float).")
    currency: str = Field(description="ISO 4217, e.g. CNY.")


class CampaignSegment(BaseModel):
    """A campaign's target segment: customer tags and the customers list's filters, by the names
    ``GET /v1/customers`` takes (the leads service's ``GET /v1/campaigns/{id}/segment`` gives the
    query string)."""

    tags_all: list[str] = Field(default_factory=list, description="Customers with every one of these tags.")
    tags_any: list[str] = Field(default_factory=list, description="Customers with at least one of these tags.")
    kind: str | None = None
    industry: str | None = None
    size: str | None = None
    source: str | None = None
    tier: str | None = None
    lifecycle_stage: str | None = None
    province: str | None = None
    city: str | None = None
    owner_id: str | None = None
    department_id: str | None = None


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
    segment: CampaignSegment | None = Field(default=None, description="The target segment, if one is set.")
    # Added in schema 1 without a version bump (additive).
    web_form_enabled: bool = Field(default=False, description="The campaign takes public web-to-lead posts.")


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


# --- the lead pool per department and assignment rules -----------------------------------------


class AssignmentCondition(BaseModel):
    field: Literal["any", "region", "industry", "source", "campaign_id"] = Field(
        description="The lead field the rule looks at; 'any' matches every lead in the rule's scope."
    )
    values: list[str] = Field(default_factory=list, description="The lead matches when its field is one of these.")


class AssignmentRuleSnapshot(BaseModel):
    rule_id: str
    name: str
    position: int = Field(description="Rules are tried in ascending position; the first that matches decides.")
    department_id: str = Field(description="The rule's scope: pool leads of this department and those below it.")
    department_path: str
    condition: AssignmentCondition
    method: Literal["round_robin", "least_loaded"]
    users: list[str] = Field(description="The users the rule gives leads to (in round-robin order).")
    capacity: int | None = Field(
        default=None, description="Most open leads (new, contacted, qualified) a user may own; None: no limit."
    )
    enabled: bool = True
    deleted: bool = False
    created_at: datetime
    created_by: str | None = None
    updated_at: datetime


class LeadRuleChanged(BaseModel):
    rule: AssignmentRuleSnapshot
    action: Literal["created", "updated", "deleted"]
    changes: list[FieldChange] = Field(default_factory=list, description="Each field changed (old and new).")


class LeadPoolSettings(BaseModel):
    claim_scope: Literal["department", "company"] = Field(
        description="department: a pool lead is for its department (and whoever's leads scope reaches it); "
        "company: for everyone with a leads scope."
    )
    updated_at: datetime
    updated_by: str | None = None


class LeadPoolSettingsChanged(BaseModel):
    settings: LeadPoolSettings
    changes: list[FieldChange]


LEAD_RULE_CHANGED = define(
    "crm.lead_rule.changed",
    LeadRuleChanged,
    TOPIC,
    description="An assignment rule of the lead pool was created, changed or deleted (keyed by the rule id).",
)
LEAD_POOL_SETTINGS_CHANGED = define(
    "crm.lead_pool.settings_changed",
    LeadPoolSettingsChanged,
    TOPIC,
    description="The lead pool's settings changed (claim_scope: department or company), keyed by 'pool'.",
)


class CampaignWebFormChanged(BaseModel):
    """The campaign's public web-to-lead form was turned on, its key rotated, or turned off. The key
    itself is never in an event (it is a secret shown once to whoever made it)."""

    campaign: CampaignSnapshot
    action: Literal["enabled", "rotated", "disabled"]


CAMPAIGN_WEB_FORM_CHANGED = define(
    "crm.campaign.web_form_changed",
    CampaignWebFormChanged,
    TOPIC,
    description="A campaign's public web-to-lead form was enabled, its key rotated, or disabled (never the key).",
)


# --- CSV import --------------------------------------------------------------------------------


class LeadsImported(BaseModel):
    """Someone imported leads from a CSV file (subject: the import's id; actor: who).

    One event per import (each imported lead also has its ``crm.lead.created`` with
    ``via: import``); a dry run imports nothing and makes none.
    """

    import_id: str
    total_rows: int = Field(description="Rows in the file.")
    valid_rows: int = Field(description="Rows that passed every check.")
    imported: int = Field(description="Leads created.")
    errors: int = Field(description="Row errors (a row may have several).")
    duplicates: int = Field(description="Rows refused as duplicates (inside the file, of a lead or of a customer).")
    campaign_id: str | None = Field(default=None, description="The campaign given for every row, if any.")


LEADS_IMPORTED = define(
    "crm.lead_import.completed",
    LeadsImported,
    TOPIC,
    description="Leads were imported from CSV: who (actor) and the counts (for the audit log).",
)


# --- lead scoring: the administrator's rules and the model trained on the organisation's history ----

#: The fixed ids these events are keyed by (one rule set and one model per organisation).
SCORING_RULES_ID = "lead-scoring-rules"
SCORING_MODEL_ID = "lead-scoring-model"


class ScoringRule(BaseModel):
    field: str = Field(
        description="source, campaign_id, region, industry, status, has_phone, has_email, "
        "has_contact_name, followup_count, days_since_last_followup, days_since_created."
    )
    op: Literal["eq", "in", "exists", "gte", "lte"]
    value: Any = None
    points: int
    label: str


class ScoringRulesChanged(BaseModel):
    rules: list[ScoringRule] = Field(description="The whole rule set now in force.")
    previous: list[ScoringRule] = Field(default_factory=list, description="The rule set it replaced.")


class ScoringModelTrained(BaseModel):
    feature_names: list[str]
    coefficients: list[float] = Field(description="One per feature, in log-odds.")
    intercept: float
    classes: list[str] = Field(description="[negative, positive]: disqualified, converted.")
    samples: dict[str, int] = Field(description="Leads trained on, per class.")
    cv_auc: float = Field(description="Cross-validated ROC AUC.")
    cv_accuracy: float
    folds: int
    trained_at: datetime
    trained_by: str | None = None


SCORING_RULES_CHANGED = define(
    "crm.lead_scoring.rules_changed",
    ScoringRulesChanged,
    TOPIC,
    description="An administrator replaced the lead scoring rules (keyed by 'lead-scoring-rules'); leads are "
    "re-scored in the background.",
)
SCORING_MODEL_TRAINED = define(
    "crm.lead_scoring.model_trained",
    ScoringModelTrained,
    TOPIC,
    description="The lead scoring model was retrained on the organisation's converted and disqualified leads "
    "(keyed by 'lead-scoring-model'); leads are re-scored in the background.",
)
