"""Response models of the pool's HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class RuleOut(BaseModel):
    rule_id: str
    name: str
    department_path: str | None
    enabled: bool
    no_interaction_days: int | None
    no_won_days: int | None
    warn_days: int
    exempt_stage_id: str | None
    exempt_tags: list[str]
    cooldown_days: int
    claim_scope: Literal["department", "company"]
    max_held: int | None = Field(description="Holding limit per owner in this scope; None: inherited.")
    lead_no_work_days: int | None = Field(default=None, description="None: leads are not recycled by this rule.")
    lead_warn_days: int | None = None
    deleted: bool
    version: int
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str


def rule_out(doc: dict[str, Any]) -> RuleOut:
    return RuleOut.model_validate({k: doc.get(k) for k in RuleOut.model_fields})


class PreviewItem(BaseModel):
    customer_id: str
    name: str | None
    owner_id: str | None
    department_path: str | None
    action: Literal["warn", "recycle"]
    deadline: datetime
    recycle_at: datetime
    rule_id: str | None
    rule_name: str | None
    reason: str | None
    reason_text: str
    owner_since: datetime | None
    last_interaction_at: datetime | None
    days_without_interaction: int
    last_won_at: datetime | None


class LeadPreviewItem(BaseModel):
    lead_id: str
    company_name: str | None
    owner_id: str | None
    department_path: str | None
    status: str | None
    action: Literal["warn", "recycle"]
    deadline: datetime
    recycle_at: datetime
    rule_id: str | None
    rule_name: str | None
    reason_text: str
    last_worked_at: datetime
    days_without_work: int


class Preview(BaseModel):
    at: datetime
    department: str | None
    items: list[PreviewItem]
    leads: list[LeadPreviewItem] = Field(
        default_factory=list,
        description="Leads nobody works that would be warned or recycled (rules with lead settings).",
    )


class MyCustomer(BaseModel):
    customer_id: str
    name: str | None
    recycle_at: datetime | None
    days_left: int | None
    warned: bool
    rule_id: str | None
    rule_name: str | None
    reason: str | None
    reason_text: str | None
    exempt: str | None
    last_interaction_at: datetime | None


class MyCustomers(BaseModel):
    items: list[MyCustomer]


class RunOut(BaseModel):
    at: datetime
    warned: int
    decided: int
    skipped: int
    paused: bool = Field(default=False, description="True when the run did nothing because a rebuild is under way.")
    leads_warned: int = 0
    leads_decided: int = 0


class RebuildOut(BaseModel):
    rebuild_id: str
    status: Literal["running", "succeeded", "failed", "cancelled", "abandoned"]
    requested_by: str
    started_at: datetime
    finished_at: datetime | None
    clocks: int | None = Field(description="Customer clocks after the rebuild.")
    error: str | None
