"""Events of the pipeline service, on ``crm.pipeline.v1``.

Opportunity events are keyed by the opportunity id and every one carries the full
:class:`OpportunitySnapshot` (amount, currency, probability, stage, status, owner,
department, customer, expected close date), so a consumer such as reporting can
build the funnel and the forecast from the events alone. Moves between stages
(``stage_changed``, ``won``, ``lost``, ``reopened``) also carry a :class:`StageMove`:
from and to (ids and names), who, when, and how long the opportunity spent in
the stage it left. ``crm.target.set`` is keyed by the target id and
``crm.pipeline.configured`` by the pipeline id.

Money is a decimal string in the currency's minor-unit precision (``"125000.00"``)
plus its ISO 4217 code; dates without a time (``expected_close_date``, ``won_on``)
are ISO dates in the organisation's business time zone.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from crm_platform.events import define

TOPIC = "crm.pipeline.v1"

OpportunityStatus = Literal["open", "won", "lost"]
StageKind = Literal["open", "won", "lost"]


class FieldChange(BaseModel):
    field: str
    old: Any = None
    new: Any = None


# --- pipelines ------------------------------------------------------------------------


class StageRequirementsData(BaseModel):
    fields: list[str] = Field(
        default_factory=list, description="Opportunity fields that must be filled to enter the stage."
    )
    documents: list[str] = Field(default_factory=list, description="Kinds of document that must be attached.")
    approval: bool = Field(default=False, description="Whether a manager of the department must approve entering it.")


class StageData(BaseModel):
    stage_id: str
    name: str
    name_en: str | None = None
    position: int
    probability: int = Field(ge=0, le=100, description="Default win probability of an opportunity in this stage.")
    kind: StageKind
    requirements: StageRequirementsData = Field(default_factory=StageRequirementsData)


class PipelineSnapshot(BaseModel):
    pipeline_id: str
    name: str
    name_en: str | None = None
    is_default: bool
    default_since: datetime | None = None
    stages: list[StageData]
    updated_at: datetime


class PipelineConfigured(BaseModel):
    pipeline: PipelineSnapshot
    action: Literal["created", "changed", "made_default", "default_removed"]
    changes: list[FieldChange] = Field(default_factory=list)


# --- opportunities ----------------------------------------------------------------------


class OpportunityLine(BaseModel):
    """A line item: a product as the pipeline's copy of the catalogue knew it, with its price."""

    product_id: str
    sku: str
    name: str
    unit: str
    quantity: str = Field(description="Decimal string, e.g. '2.5'.")
    unit_price: str = Field(description="Decimal string in the opportunity's currency.")
    discount_percent: str = Field(description="Decimal string, 0 to 100.")
    line_total: str = Field(description="quantity × unit_price × (100 − discount_percent)%, rounded half up.")
    price_list_id: str | None = Field(default=None, description="The price list the price came from, if defaulted.")


class OpportunitySnapshot(BaseModel):
    """The opportunity as it stands after the change."""

    opportunity_id: str
    name: str
    customer_id: str
    contact_ids: list[str] = Field(default_factory=list)
    amount: str | None = Field(default=None, description="Decimal string, e.g. '125000.00'.")
    currency: str
    quotation_amount: str | None = None
    probability: int = Field(ge=0, le=100, description="Effective win probability (100 when won, 0 when lost).")
    probability_overridden: bool = False
    weighted_amount: str | None = Field(default=None, description="amount × probability / 100, for the forecast.")
    expected_close_date: date | None = None
    pipeline_id: str
    stage_id: str
    stage_name: str
    stage_kind: StageKind
    stage_entered_at: datetime
    status: OpportunityStatus
    won_on: date | None = None
    lost_on: date | None = None
    owner_id: str
    department_id: str | None = None
    department_path: str | None = None
    source_campaign: str | None = None
    document_kinds: list[str] = Field(default_factory=list)
    hidden: bool = Field(
        default=False, description="True while its customer is deleted or purged: hidden from lists and reads."
    )
    created_at: datetime
    created_by: str | None = None
    updated_at: datetime
    # Added in schema 1 without a version bump (additive): administrators' custom field values by
    # key (GET /v1/fields/opportunities); None in events published before it.
    custom: dict[str, Any] | None = None
    # Added in schema 1 without a version bump (additive): the lead it was converted from, if any.
    lead_id: str | None = None
    # Added in schema 1 without a version bump (additive): line items from the catalogue's products
    # (PUT /v1/opportunities/{id}/lines); None in events published before them.
    lines: list[OpportunityLine] | None = None
    lines_total: str | None = Field(default=None, description="Sum of the line totals, e.g. '2304.00'.")
    amount_follows_lines: bool | None = Field(
        default=None, description="True: the amount is set to lines_total whenever the lines change."
    )


class StageMove(BaseModel):
    from_stage_id: str | None
    from_stage_name: str | None
    to_stage_id: str
    to_stage_name: str
    moved_by: str
    moved_at: datetime
    time_in_previous_stage_seconds: float | None = Field(
        default=None, description="How long the opportunity stayed in the stage it left."
    )
    skipped_stage_ids: list[str] = Field(default_factory=list, description="Open stages passed over by a forward move.")


class OpportunityCreated(BaseModel):
    opportunity: OpportunitySnapshot


class OpportunityUpdated(BaseModel):
    opportunity: OpportunitySnapshot
    changes: list[FieldChange]
    reason: str | None = Field(default=None, description="Why, when the system changed it (e.g. 'customer deleted').")


class StageChanged(BaseModel):
    opportunity: OpportunitySnapshot
    move: StageMove


class OpportunityWon(BaseModel):
    opportunity: OpportunitySnapshot
    move: StageMove
    reason: str


class OpportunityLost(BaseModel):
    opportunity: OpportunitySnapshot
    move: StageMove
    reason: str
    competitor: str | None = None


class OpportunityReopened(BaseModel):
    opportunity: OpportunitySnapshot
    move: StageMove
    reason: str
    previous_status: Literal["won", "lost"]


class OwnerChanged(BaseModel):
    opportunity: OpportunitySnapshot
    previous_owner_id: str
    previous_department_path: str | None = None
    owner_id: str
    reason: str | None = None


class CustomerChanged(BaseModel):
    """The opportunity now belongs to another customer (its customer was merged into ``customer_id``)."""

    opportunity: OpportunitySnapshot
    previous_customer_id: str
    customer_id: str
    reason: Literal["merged"] = "merged"


class LeadRefused(BaseModel):
    """The pipeline service's answer when it cannot make the opportunity a lead's conversion asks for
    (subject: that opportunity id; nothing was written)."""

    opportunity_id: str
    lead_id: str
    conversion_id: str
    reason: str
    errors: list[dict[str, Any]] = Field(default_factory=list, description="Field errors (field, reason, code).")


# --- targets ------------------------------------------------------------------------------


class TargetData(BaseModel):
    target_id: str = Field(description="'<scope>:<scope_id>:<period>', e.g. 'rep:u-1:2026-Q4'.")
    scope: Literal["rep", "department"]
    scope_id: str = Field(description="The rep's user id, or the department id.")
    department_path: str | None = None
    period: str = Field(description="2026-11 (month), 2026-Q4 (quarter) or 2026 (year).")
    period_start: date
    period_end: date = Field(description="Exclusive.")
    amount: str
    currency: str
    set_by: str
    set_at: datetime


class TargetSet(BaseModel):
    target: TargetData
    previous_amount: str | None = None


PIPELINE_CONFIGURED = define(
    "crm.pipeline.configured",
    PipelineConfigured,
    TOPIC,
    description="A pipeline was created or its stages, names, probabilities or requirements changed "
    "(subject: pipeline id).",
)
OPPORTUNITY_CREATED = define(
    "crm.opportunity.created", OpportunityCreated, TOPIC, description="An opportunity (商机) was created."
)
OPPORTUNITY_UPDATED = define(
    "crm.opportunity.updated",
    OpportunityUpdated,
    TOPIC,
    description="Fields of the opportunity changed; `changes` lists field, old and new.",
)
OPPORTUNITY_STAGE_CHANGED = define(
    "crm.opportunity.stage_changed",
    StageChanged,
    TOPIC,
    description="The opportunity moved to another open stage: from/to ids and names, time spent in the previous stage.",
)
OPPORTUNITY_WON = define(
    "crm.opportunity.won", OpportunityWon, TOPIC, description="The opportunity was won (final until reopened)."
)
OPPORTUNITY_LOST = define(
    "crm.opportunity.lost",
    OpportunityLost,
    TOPIC,
    description="The opportunity was lost, with a reason and the competitor.",
)
OPPORTUNITY_REOPENED = define(
    "crm.opportunity.reopened",
    OpportunityReopened,
    TOPIC,
    description="A won or lost opportunity was reopened into an open stage.",
)
OPPORTUNITY_OWNER_CHANGED = define(
    "crm.opportunity.owner_changed", OwnerChanged, TOPIC, description="The opportunity was assigned to another owner."
)
OPPORTUNITY_CUSTOMER_CHANGED = define(
    "crm.opportunity.customer_changed",
    CustomerChanged,
    TOPIC,
    description="The opportunity moved to another customer because its customer was merged into that one.",
)
OPPORTUNITY_LEAD_REFUSED = define(
    "crm.opportunity.lead_refused",
    LeadRefused,
    TOPIC,
    description="A lead's conversion could not make its opportunity (e.g. an unknown pipeline); nothing was written.",
)
TARGET_SET = define(
    "crm.target.set",
    TargetSet,
    TOPIC,
    description="A sales target (目标) was set for a rep or a department and a month, quarter or year "
    "(subject: target id).",
)

OPPORTUNITY_EVENTS = (
    OPPORTUNITY_CREATED,
    OPPORTUNITY_UPDATED,
    OPPORTUNITY_STAGE_CHANGED,
    OPPORTUNITY_WON,
    OPPORTUNITY_LOST,
    OPPORTUNITY_REOPENED,
    OPPORTUNITY_OWNER_CHANGED,
    OPPORTUNITY_CUSTOMER_CHANGED,
)
