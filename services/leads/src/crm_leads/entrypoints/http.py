"""The HTTP API of the leads service (/v1/leads)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from crm_leads.application.leads import LeadFilter, Leads
from crm_leads.domain.model import AssignIn, LeadIn, LeadPatch, ReleaseIn
from crm_leads.entrypoints.schemas import LeadOut, LeadPage, lead_out
from crm_platform.auth import CurrentPrincipal
from crm_platform.concurrency import expected_version, versioned
from crm_platform.history import HistoryEntry
from crm_platform.openapi import problems

Document = dict[str, Any]


def leads(request: Request) -> Leads:
    found: Leads = request.app.state.leads
    return found


App = Annotated[Leads, Depends(leads)]
router = APIRouter(prefix="/v1/leads", tags=["leads"])


def _lead(doc: Document, status: int = 200) -> JSONResponse:
    return versioned(lead_out(doc), doc, status, location=f"/v1/leads/{doc['_id']}" if status == 201 else None)


@router.post("", status_code=201, response_model=LeadOut, summary="Enter a lead", responses=problems(409))
async def create_lead(body: LeadIn, principal: CurrentPrincipal, app: App) -> JSONResponse:
    """Yours unless ``in_pool`` is true. 409 naming each field a live lead or a customer holds already
    (company name normalised, each phone, each email): first entered owns."""
    return _lead(await app.create(principal, body), 201)


@router.get("", response_model=LeadPage, summary="Leads you may see, filtered and paged")
async def list_leads(params: Annotated[LeadFilter, Query()], principal: CurrentPrincipal, app: App) -> LeadPage:
    """Your own leads, those your ``leads`` scope reaches, and the lead pool. Filters combine with AND;
    sort on ``created_at`` or ``updated_at`` (``-`` for descending); page with ``next_cursor``."""
    page = await app.page(principal, params)
    return LeadPage(items=[lead_out(d) for d in page.items], next_cursor=page.next_cursor, total=page.total)


@router.get("/{lead_id}", response_model=LeadOut, summary="One lead")
async def get_lead(lead_id: str, principal: CurrentPrincipal, app: App) -> JSONResponse:
    return _lead(await app.get(principal, lead_id))


@router.patch(
    "/{lead_id}", response_model=LeadOut, summary="Change a lead or move it on", responses=problems(409, 412, 428)
)
async def patch_lead(
    lead_id: str, body: LeadPatch, request: Request, principal: CurrentPrincipal, app: App
) -> JSONResponse:
    """``If-Match`` required. ``status``: new -> contacted -> qualified, or disqualified with a ``reason``."""
    return _lead(await app.update(principal, lead_id, body, expected_version(request, required=True)))


@router.delete("/{lead_id}", status_code=204, summary="Delete a lead", responses=problems(412))
async def delete_lead(lead_id: str, request: Request, principal: CurrentPrincipal, app: App) -> Response:
    """Its keys are given up: the company, phones and emails may be entered again."""
    await app.delete(principal, lead_id, expected_version(request, required=False))
    return Response(status_code=204)


@router.get("/{lead_id}/history", response_model=list[HistoryEntry], summary="Field-level history of a lead")
async def lead_history(lead_id: str, request: Request, principal: CurrentPrincipal, app: App) -> list[HistoryEntry]:
    return await app.history(principal, lead_id, request.app.state.kit.event_log)


@router.post(
    "/{lead_id}/claim", response_model=LeadOut, summary="Claim a lead from the lead pool", responses=problems(409, 412)
)
async def claim_lead(lead_id: str, request: Request, principal: CurrentPrincipal, app: App) -> JSONResponse:
    """Of many claiming at once exactly one wins; the others get 409."""
    return _lead(await app.claim(principal, lead_id, expected_version(request, required=False)))


@router.post(
    "/{lead_id}/release", response_model=LeadOut, summary="Give a lead back to the pool", responses=problems(409, 412)
)
async def release_lead(
    lead_id: str, body: ReleaseIn, request: Request, principal: CurrentPrincipal, app: App
) -> JSONResponse:
    return _lead(await app.release(principal, lead_id, body, expected_version(request, required=False)))


@router.post(
    "/{lead_id}/assign", response_model=LeadOut, summary="Give a lead to someone", responses=problems(409, 412)
)
async def assign_lead(
    lead_id: str, body: AssignIn, request: Request, principal: CurrentPrincipal, app: App
) -> JSONResponse:
    """``owner_id``: an active user of the directory in a department your ``leads`` scope reaches."""
    return _lead(await app.assign(principal, lead_id, body, expected_version(request, required=False)))
