"""What the HTTP API returns, and how stored documents become it."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from crm_pipeline.domain import lines as item_lines
from crm_pipeline.domain import money
from crm_pipeline.domain import opportunities as rules
from crm_pipeline.domain import pipelines as pl
from crm_pipeline.domain import requirements as req
from crm_pipeline.domain.funnel import Funnel
from crm_platform.clock import as_utc
from crm_platform.contracts.pipeline import OpportunityLine

Document = dict[str, Any]


# --- pipelines ----------------------------------------------------------------------------


class RequirementsOut(BaseModel):
    fields: list[str] = []
    documents: list[str] = []
    approval: bool = False


class StageOut(BaseModel):
    stage_id: str
    name: str
    name_en: str | None = None
    position: int
    probability: int
    kind: Literal["open", "won", "lost"]
    requirements: RequirementsOut


class PipelineOut(BaseModel):
    id: str
    version: int
    name: str
    name_en: str | None = None
    is_default: bool
    stages: list[StageOut]
    created_at: datetime
    created_by: str | None = None
    updated_at: datetime
    updated_by: str | None = None


def pipeline_out(doc: Document) -> PipelineOut:
    return PipelineOut(
        id=doc["_id"],
        version=doc["version"],
        name=doc["name"],
        name_en=doc.get("name_en"),
        is_default=bool(doc.get("is_default")),
        stages=[StageOut.model_validate(s) for s in pl.stages(doc)],
        created_at=doc["created_at"],
        created_by=doc.get("created_by"),
        updated_at=doc["updated_at"],
        updated_by=doc.get("updated_by"),
    )


# --- opportunities ------------------------------------------------------------------------


class ProductOut(BaseModel):
    name: str
    quantity: str
    unit_price: str
    line_total: str


class DocumentOut(BaseModel):
    document_id: str
    kind: str
    name: str
    url: str
    added_by: str | None = None
    added_at: datetime | None = None


class ApprovalOut(BaseModel):
    stage_id: str
    stage_name: str | None = None
    status: Literal["pending", "approved", "rejected"]
    requested_by: str | None = None
    requested_at: datetime | None = None
    note: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    decision_note: str | None = None


class CurrentStage(BaseModel):
    stage_id: str
    name: str
    name_en: str | None = None
    kind: str
    position: int | None = Field(description="None if the stage was removed from the pipeline since.")
    entered_at: datetime
    days_in_stage: float


class MissingOut(BaseModel):
    stage_id: str
    stage_name: str
    kind: Literal["field", "document", "approval"]
    item: str
    reason: str


class NextStage(BaseModel):
    """The next open stage (or signing, from the last one) and what entering it still needs."""

    stage_id: str
    name: str
    missing: list[MissingOut]


class ClosedOut(BaseModel):
    by: str
    at: datetime
    reason: str
    competitor: str | None = None


class StageHistoryOut(BaseModel):
    kind: Literal["created", "moved", "won", "lost", "reopened"]
    from_stage_id: str | None = None
    from_stage_name: str | None = None
    to_stage_id: str
    to_stage_name: str
    by: str
    at: datetime
    days_in_previous: float | None = None
    skipped: list[str] = []
    reason: str | None = None


class OpportunityOut(BaseModel):
    id: str
    version: int
    name: str
    customer_id: str
    contact_ids: list[str] = []
    amount: str | None = None
    currency: str
    quotation_amount: str | None = None
    probability: int
    probability_overridden: bool
    stage_probability: int
    weighted_amount: str | None = None
    expected_close_date: date | None = None
    source_campaign: str | None = None
    lead_id: str | None = Field(default=None, description="The lead this opportunity was converted from, if any.")
    products: list[ProductOut] = []
    lines: list[OpportunityLine] = Field(
        default_factory=list, description="Line items from the catalogue's products (PUT .../lines)."
    )
    lines_total: str | None = Field(default=None, description="Sum of the line totals, in the currency.")
    amount_follows_lines: bool = Field(default=False, description="True: the amount is the lines' total.")
    notes: str | None = None
    documents: list[DocumentOut] = []
    approvals: list[ApprovalOut] = []
    pending_approval: bool = False
    owner_id: str
    department_id: str | None = None
    department_path: str | None = None
    pipeline_id: str
    stage: CurrentStage
    next_stage: NextStage | None = None
    status: Literal["open", "won", "lost"]
    won: ClosedOut | None = None
    lost: ClosedOut | None = None
    won_on: date | None = None
    lost_on: date | None = None
    stage_history: list[StageHistoryOut] | None = Field(
        default=None, description="Every move; in the detail view only."
    )
    created_at: datetime
    created_by: str | None = None
    updated_at: datetime
    updated_by: str | None = None
    custom: dict[str, Any] = Field(
        default_factory=dict, description="Custom field values by key (GET /v1/fields/opportunities)."
    )


def _days(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 86400, 3)


def _next_stage(doc: Document, pipeline: Document) -> NextStage | None:
    if doc["status"] != "open":
        return None
    current = pl.stage_of(pipeline, doc["stage_id"])
    later = [s for s in pl.open_stages(pipeline) if current is None or s["position"] > current["position"]]
    target = later[0] if later else pl.stage_of_kind(pipeline, "won")
    stages, _ = req.path(pipeline, doc["stage_id"], target)
    missing = req.missing(doc, stages)
    return NextStage(
        stage_id=target["stage_id"],
        name=target["name"],
        missing=[MissingOut.model_validate(m.as_dict()) for m in missing],
    )


def opportunity_out(doc: Document, pipeline: Document | None, now: datetime, *, detail: bool = False) -> OpportunityOut:
    currency = doc["currency"]
    stage = pl.stage_of(pipeline, doc["stage_id"]) if pipeline else None
    entered = as_utc(doc["stage_entered_at"])
    current = CurrentStage(
        stage_id=doc["stage_id"],
        name=stage["name"] if stage else doc["stage_name"],
        name_en=stage.get("name_en") if stage else None,
        kind=doc["stage_kind"],
        position=stage["position"] if stage else None,
        entered_at=entered,
        days_in_stage=round(max((now - entered).total_seconds(), 0) / 86400, 3),
    )
    return OpportunityOut(
        id=doc["_id"],
        version=doc["version"],
        name=doc["name"],
        customer_id=doc["customer_id"],
        contact_ids=list(doc.get("contact_ids") or []),
        amount=money.format_optional(doc.get("amount_minor"), currency),
        currency=currency,
        quotation_amount=money.format_optional(doc.get("quotation_minor"), currency),
        probability=doc["probability"],
        probability_overridden=doc.get("probability_override") is not None,
        stage_probability=doc.get("stage_probability", 0),
        weighted_amount=money.format_optional(doc.get("weighted_minor"), currency),
        expected_close_date=doc.get("expected_close_date"),
        source_campaign=doc.get("source_campaign"),
        lead_id=doc.get("lead_id"),
        products=[ProductOut(**rules.product_out(p, currency)) for p in doc.get("products") or []],
        lines=[OpportunityLine(**line) for line in item_lines.lines_out(doc)],
        lines_total=item_lines.lines_total_out(doc),
        amount_follows_lines=bool(doc.get("amount_follows_lines")),
        notes=doc.get("notes"),
        documents=[DocumentOut.model_validate(d) for d in doc.get("documents") or []],
        approvals=[ApprovalOut.model_validate(a) for a in doc.get("approvals") or []],
        pending_approval=bool(doc.get("pending_approval")),
        owner_id=doc["owner_id"],
        department_id=doc.get("department_id"),
        department_path=doc.get("department_path"),
        pipeline_id=doc["pipeline_id"],
        stage=current,
        next_stage=_next_stage(doc, pipeline) if pipeline and detail else None,
        status=doc["status"],
        won=doc.get("won"),
        lost=doc.get("lost"),
        won_on=doc.get("won_on") or None,
        lost_on=doc.get("lost_on") or None,
        stage_history=[
            StageHistoryOut(**{**e, "days_in_previous": _days(e.get("seconds_in_previous"))})
            for e in doc.get("stage_history") or []
        ]
        if detail
        else None,
        created_at=doc["created_at"],
        created_by=doc.get("created_by"),
        updated_at=doc["updated_at"],
        updated_by=doc.get("updated_by"),
        custom=dict(doc.get("custom") or {}),
    )


class OpportunityPage(BaseModel):
    items: list[OpportunityOut]
    next_cursor: str | None = None
    total: int | None = None


# --- targets, funnel ------------------------------------------------------------------------


class TargetOut(BaseModel):
    id: str
    version: int
    scope: Literal["rep", "department"]
    scope_id: str
    department_path: str | None = None
    period: str
    period_start: date
    period_end: date
    amount: str
    currency: str
    set_by: str
    set_at: datetime


def target_out(doc: Document) -> TargetOut:
    return TargetOut(
        id=doc["_id"],
        version=doc["version"],
        scope=doc["scope"],
        scope_id=doc["scope_id"],
        department_path=doc.get("department_path"),
        period=doc["period"],
        period_start=doc["period_start"],
        period_end=doc["period_end"],
        amount=money.format_minor(doc["amount_minor"], doc["currency"]),
        currency=doc["currency"],
        set_by=doc["set_by"],
        set_at=doc["set_at"],
    )


class FunnelStageOut(BaseModel):
    stage_id: str
    name: str
    name_en: str | None = None
    kind: str
    position: int
    reached: int = Field(description="Opportunities of the cohort that reached this stage (or went past it).")
    amount: str = Field(description="Their current amounts, in the funnel's currency.")
    other_currencies: dict[str, str] = {}
    current: int = Field(description="Of them, in this stage now.")
    conversion_to_next: float | None = Field(
        description="reached(next) / reached(this); the last open stage converts into won."
    )
    average_days_in_stage: float | None = Field(description="Mean of completed stays in this stage.")
    completed_stays: int


class FunnelOut(BaseModel):
    pipeline_id: str
    currency: str
    date_from: date | None = Field(default=None, alias="from")
    date_to: date | None = Field(default=None, alias="to")
    rep: str | None = None
    department: str | None = None
    total: int
    won: int
    lost: int
    win_rate: float | None = Field(description="won / (won + lost)")
    stages: list[FunnelStageOut]

    model_config = {"populate_by_name": True}


def funnel_out(pipeline: Document, funnel: Funnel, currency: str, **scope: Any) -> FunnelOut:
    return FunnelOut(
        pipeline_id=pipeline["_id"],
        currency=currency,
        total=funnel.total,
        won=funnel.won,
        lost=funnel.lost,
        win_rate=funnel.win_rate,
        stages=[
            FunnelStageOut(
                stage_id=s.stage_id,
                name=s.name,
                name_en=s.name_en,
                kind=s.kind,
                position=s.position,
                reached=s.reached,
                amount=money.format_minor(s.amount_minor, currency),
                other_currencies={c: money.format_minor(v, c) for c, v in s.other_currencies.items()},
                current=s.current,
                conversion_to_next=s.conversion_to_next,
                average_days_in_stage=s.average_days_in_stage,
                completed_stays=len(s.stays),
            )
            for s in funnel.stages
        ],
        **scope,
    )
