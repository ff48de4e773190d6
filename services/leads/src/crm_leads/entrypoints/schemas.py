"""What the leads API answers with."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from crm_leads.domain.model import LeadSource, LeadStatus

Document = dict[str, Any]


class ConversionOut(BaseModel):
    """A lead's current (or last) conversion: see crm_leads.domain.conversion."""

    conversion_id: str
    state: str
    step: str | None = None
    reason: str | None = None
    errors: list[dict[str, Any]] = []
    customer_id: str | None = None
    existing_customer: bool = False
    contact_id: str | None = None
    opportunity_id: str | None = None
    requested_by: str | None = None
    requested_at: datetime | None = None


class LeadOut(BaseModel):
    id: str
    company_name: str
    contact_name: str | None = None
    phones: list[str]
    emails: list[str]
    source: LeadSource | None = None
    campaign_id: str | None = None
    region: str | None = None
    industry: str | None = None
    owner_id: str | None = None
    in_pool: bool
    department_id: str | None = None
    department_path: str | None = None
    status: LeadStatus
    disqualified_reason: str | None = None
    notes: str | None = None
    created_at: datetime
    created_by: str | None = None
    updated_at: datetime
    version: int
    customer_id: str | None = None
    contact_id: str | None = None
    opportunity_id: str | None = None
    conversion: ConversionOut | None = None
    followup_count: int = 0
    last_followup_at: datetime | None = None
    score: int | None = Field(default=None, description="0..100, as of the lead's last change or re-score.")


class LeadPage(BaseModel):
    items: list[LeadOut]
    next_cursor: str | None = None
    total: int | None = None


def lead_out(doc: Document) -> LeadOut:
    return LeadOut(
        id=doc["_id"],
        company_name=doc["company_name"],
        contact_name=doc.get("contact_name"),
        phones=list(doc.get("phones") or []),
        emails=list(doc.get("emails") or []),
        source=doc.get("source"),
        campaign_id=doc.get("campaign_id"),
        region=doc.get("region"),
        industry=doc.get("industry"),
        owner_id=doc.get("owner_id"),
        in_pool=bool(doc.get("in_pool")),
        department_id=doc.get("department_id"),
        department_path=doc.get("department_path"),
        status=doc["status"],
        disqualified_reason=doc.get("disqualified_reason"),
        notes=doc.get("notes"),
        created_at=doc["created_at"],
        created_by=doc.get("created_by"),
        updated_at=doc["updated_at"],
        version=int(doc["version"]),
        customer_id=doc.get("customer_id"),
        contact_id=doc.get("contact_id"),
        opportunity_id=doc.get("opportunity_id"),
        conversion=ConversionOut.model_validate({k: v for k, v in doc["conversion"].items() if k != "command"})
        if doc.get("conversion")
        else None,
        followup_count=int(doc.get("followup_count") or 0),
        last_followup_at=doc.get("last_followup_at"),
        score=doc.get("score"),
    )
