"""HTTP: an opportunity's line items from the catalogue's products (issue 18)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from crm_pipeline.application.lines import LineItems
from crm_pipeline.domain.model import LinesIn
from crm_pipeline.entrypoints.http import Svc, _opportunity
from crm_pipeline.entrypoints.schemas import OpportunityOut
from crm_platform.auth import CurrentPrincipal
from crm_platform.concurrency import expected_version
from crm_platform.openapi import problems

router = APIRouter(prefix="/v1/opportunities", tags=["opportunities"])


@router.put(
    "/{opportunity_id}/lines",
    response_model=OpportunityOut,
    summary="Replace the line items (If-Match): products from the catalogue, quantity, unit price, discount",
    description="The whole list (0..200 lines). A unit price left out is the product's price on the price "
    "list in the opportunity's currency for the customer's tier (else the default list), valid today; "
    "422 names lines[i].unit_price when there is none, lines[i].product_id for an unknown or deactivated "
    "product. With amount_follows_lines the amount becomes the lines' total in the same write.",
    responses=problems(409, 412, 428),
)
async def put_lines(
    opportunity_id: str, body: LinesIn, request: Request, principal: CurrentPrincipal, svc: Svc
) -> JSONResponse:
    policy = principal.fields("opportunities")
    if body.amount_follows_lines:
        policy.ensure_writable(["amount"])  # the amount becomes the lines' total
    items: LineItems = request.app.state.line_items
    doc = await items.replace(principal, opportunity_id, body, expected_version(request, required=True))
    return await _opportunity(principal, svc, doc)
