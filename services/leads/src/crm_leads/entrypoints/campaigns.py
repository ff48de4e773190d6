"""The HTTP API of campaigns (/v1/campaigns)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from crm_leads.application.campaigns import CampaignFilter, Campaigns
from crm_leads.domain.campaigns import CampaignIn, CampaignPatch, CampaignStatus, Channel, CostIn
from crm_leads.domain.segments import customers_query
from crm_platform.auth import CurrentPrincipal
from crm_platform.concurrency import expected_version, versioned
from crm_platform.contracts.leads import CampaignSegment, Money
from crm_platform.history import HistoryEntry
from crm_platform.openapi import problems

Document = dict[str, Any]


class CostOut(BaseModel):
    cost_id: str
    amount: Money
    date: date
    note: str | None = None
    recorded_by: str | None = None
    recorded_at: datetime


class CampaignOut(BaseModel):
    id: str
    name: str
    channel: Channel
    budget: Money
    start_date: date
    end_date: date
    owner_id: str
    department_id: str | None = None
    department_path: str | None = None
    status: CampaignStatus
    cost_total: Money
    costs: list[CostOut] | None = None
    segment: CampaignSegment | None = None
    created_at: datetime
    created_by: str | None = None
    updated_at: datetime
    version: int


class SegmentOut(BaseModel):
    campaign_id: str
    segment: CampaignSegment | None = Field(description="null: the campaign has no segment.")
    customers_query: str | None = Field(
        description="The query string of GET /v1/customers listing the segment's customers "
        "(as the viewer sees them); null without a segment."
    )


class CampaignPage(BaseModel):
    items: list[CampaignOut]
    next_cursor: str | None = None
    total: int | None = None


def campaign_out(doc: Document, *, with_costs: bool = True) -> CampaignOut:
    return CampaignOut(
        id=doc["_id"],
        name=doc["name"],
        channel=doc["channel"],
        budget=Money(**doc["budget"]),
        start_date=doc["start_date"],
        end_date=doc["end_date"],
        owner_id=doc["owner_id"],
        department_id=doc.get("department_id"),
        department_path=doc.get("department_path"),
        status=doc["status"],
        cost_total=Money(**doc["cost_total"]),
        costs=[CostOut(**c) for c in doc.get("costs") or []] if with_costs else None,
        segment=CampaignSegment(**doc["segment"]) if doc.get("segment") else None,
        created_at=doc["created_at"],
        created_by=doc.get("created_by"),
        updated_at=doc["updated_at"],
        version=int(doc["version"]),
    )


def campaigns(request: Request) -> Campaigns:
    found: Campaigns = request.app.state.campaigns
    return found


App = Annotated[Campaigns, Depends(campaigns)]
router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])


def _campaign(doc: Document, status: int = 200) -> JSONResponse:
    return versioned(campaign_out(doc), doc, status, location=f"/v1/campaigns/{doc['_id']}" if status == 201 else None)


@router.post("", status_code=201, response_model=CampaignOut, summary="Plan a campaign")
async def plan_campaign(body: CampaignIn, principal: CurrentPrincipal, app: App) -> JSONResponse:
    """Budget as ``{"amount": "120000.00", "currency": "CNY"}`` (a decimal string, never a number);
    ``end_date`` not before ``start_date``. Starts ``planned``."""
    return _campaign(await app.plan(principal, body), 201)


@router.get("", response_model=CampaignPage, summary="Campaigns, filtered and paged")
async def list_campaigns(params: Annotated[CampaignFilter, Query()], app: App) -> CampaignPage:
    """Sort on ``created_at`` (default ``-created_at``) or ``start_date``; rows without their cost entries."""
    page = await app.page(params)
    items = [campaign_out(d, with_costs=False) for d in page.items]
    return CampaignPage(items=items, next_cursor=page.next_cursor, total=page.total)


@router.get("/{campaign_id}", response_model=CampaignOut, summary="One campaign with its cost entries")
async def get_campaign(campaign_id: str, app: App) -> JSONResponse:
    return _campaign(await app.get(campaign_id))


@router.get("/{campaign_id}/segment", response_model=SegmentOut, summary="A campaign's target segment")
async def campaign_segment(campaign_id: str, app: App) -> SegmentOut:
    """The definition and ``customers_query``: append it to ``GET /v1/customers?`` to list exactly
    the segment's customers; the customers service answers with what the caller may see."""
    doc = await app.get(campaign_id)
    segment = doc.get("segment")
    return SegmentOut(
        campaign_id=doc["_id"],
        segment=CampaignSegment(**segment) if segment else None,
        customers_query=customers_query(segment) if segment else None,
    )


@router.patch(
    "/{campaign_id}",
    response_model=CampaignOut,
    summary="Change a campaign or move it on",
    responses=problems(409, 412, 428),
)
async def patch_campaign(
    campaign_id: str, body: CampaignPatch, request: Request, principal: CurrentPrincipal, app: App
) -> JSONResponse:
    """``If-Match`` required. ``status``: planned -> active -> completed, planned or active -> cancelled."""
    return _campaign(await app.update(principal, campaign_id, body, expected_version(request, required=True)))


@router.get("/{campaign_id}/history", response_model=list[HistoryEntry], summary="Field-level history")
async def campaign_history(campaign_id: str, request: Request, app: App) -> list[HistoryEntry]:
    return await app.history(campaign_id, request.app.state.kit.event_log)


@router.post(
    "/{campaign_id}/costs",
    status_code=201,
    response_model=CampaignOut,
    summary="Record a cost on a campaign",
    responses=problems(409, 412),
)
async def add_cost(
    campaign_id: str, body: CostIn, request: Request, principal: CurrentPrincipal, app: App
) -> JSONResponse:
    """In the budget's currency; the campaign's ``cost_total`` follows in the same write. ``If-Match`` optional."""
    doc = await app.add_cost(principal, campaign_id, body, expected_version(request, required=False))
    return _campaign(doc, 201)
