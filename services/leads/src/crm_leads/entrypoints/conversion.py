"""The HTTP API of lead conversion (POST /v1/leads/{id}/convert)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from crm_leads.application.conversion import Conversions
from crm_leads.domain.conversion import ConvertIn
from crm_leads.entrypoints.schemas import LeadOut, lead_out
from crm_platform.auth import CurrentPrincipal
from crm_platform.concurrency import expected_version, versioned
from crm_platform.openapi import problems


def conversions(request: Request) -> Conversions:
    found: Conversions = request.app.state.conversions
    return found


App = Annotated[Conversions, Depends(conversions)]
router = APIRouter(prefix="/v1/leads", tags=["leads"])


@router.post(
    "/{lead_id}/convert",
    status_code=202,
    response_model=LeadOut,
    summary="Convert a qualified lead into a customer + contact (+ opportunity)",
    responses=problems(403, 409, 412, 422),
)
async def convert_lead(
    lead_id: str, body: ConvertIn, request: Request, principal: CurrentPrincipal, app: App
) -> JSONResponse:
    """202: the lead is ``converting``; the customers (and pipeline) services make what it asks by
    events, and the lead ends ``converted`` (or ``qualified`` again, the failure in ``conversion``).
    Calling again while it converts answers with the same conversion. ``customer_id`` links to an
    existing customer (no ``customers:create`` needed); 409 when the lead's company is a customer
    already and no ``customer_id`` is given, or the lead is not qualified."""
    doc = await app.convert(principal, lead_id, body, expected_version(request, required=False))
    return versioned(lead_out(doc), doc, 202, location=f"/v1/leads/{doc['_id']}")
