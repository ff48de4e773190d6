"""The HTTP API of quotations (/v1/quotations)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from crm_platform.auth import CurrentPrincipal
from crm_platform.concurrency import etag, expected_version, versioned
from crm_platform.contracts.sales import QuotationLine
from crm_platform.openapi import problems
from crm_sales.adapters import quotation_pdf
from crm_sales.application.quotations import Quotations
from crm_sales.domain import quotations as rules
from crm_sales.domain.quotations import Comment, QuotationIn, QuotationPatch

Document = dict[str, Any]


class Decision(BaseModel):
    decision: str
    by: str | None = None
    at: datetime
    comment: str | None = None


class RevisionOut(BaseModel):
    revision: int
    status: str = Field(description="As shown: an open quotation past valid_until is expired.")
    current: bool = Field(description="false: a kept, read-only earlier revision.")
    customer_id: str
    customer_name: str | None = None
    opportunity_id: str | None = None
    currency: str
    tier: str | None = None
    valid_until: date
    notes: str | None = None
    lines: list[QuotationLine]
    subtotal: str
    discount_total: str
    total: str
    needs_approval: bool
    approval: Decision | None = None
    sent_at: datetime | None = None
    answer: Decision | None = None
    updated_at: datetime
    updated_by: str | None = None
    superseded_at: datetime | None = None


class QuotationOut(RevisionOut):
    id: str
    number: str
    owner_id: str
    department_path: str | None = None
    created_at: datetime
    created_by: str | None = None
    version: int = Field(description="The stored version (the ETag), not the revision.")


class RevisionList(BaseModel):
    id: str
    number: str
    items: list[RevisionOut] = Field(description="Every revision, the first first; the last is the current one.")


def _status(doc: Document, today: date) -> str:
    return rules.shown_status(doc, today)


def revision_out(doc: Document, today: date, current: bool) -> RevisionOut:
    return RevisionOut(
        revision=int(doc["revision"]),
        status=_status(doc, today) if current else str(doc["status"]),
        current=current,
        customer_id=doc["customer_id"],
        customer_name=doc.get("customer_name"),
        opportunity_id=doc.get("opportunity_id"),
        currency=doc["currency"],
        tier=doc.get("tier"),
        valid_until=date.fromisoformat(doc["valid_until"]),
        notes=doc.get("notes"),
        lines=[QuotationLine(**line) for line in doc["lines"]],
        subtotal=doc["subtotal"],
        discount_total=doc["discount_total"],
        total=doc["total"],
        needs_approval=bool(doc.get("needs_approval")),
        approval=doc.get("approval"),
        sent_at=doc.get("sent_at"),
        answer=doc.get("answer"),
        updated_at=doc["updated_at"],
        updated_by=doc.get("updated_by"),
        superseded_at=doc.get("superseded_at"),
    )


def quotation_out(doc: Document, today: date) -> QuotationOut:
    return QuotationOut(
        **revision_out(doc, today, True).model_dump(),
        id=doc["_id"],
        number=doc["number"],
        owner_id=doc["owner_id"],
        department_path=doc.get("department_path"),
        created_at=doc["created_at"],
        created_by=doc.get("created_by"),
        version=int(doc["version"]),
    )


def quotations(request: Request) -> Quotations:
    found: Quotations = request.app.state.quotations
    return found


App = Annotated[Quotations, Depends(quotations)]
router = APIRouter(prefix="/v1/quotations", tags=["quotations"])


def _answer(app: Quotations, doc: Document, status: int = 200) -> JSONResponse:
    return versioned(
        quotation_out(doc, app.today()), doc, status, location=f"/v1/quotations/{doc['_id']}" if status == 201 else None
    )


@router.post("", status_code=201, response_model=QuotationOut, summary="Draft a quotation", responses=problems(422))
async def create_quotation(body: QuotationIn, principal: CurrentPrincipal, app: App) -> JSONResponse:
    """Totals are computed here (Decimal, quantized to the currency). A line without ``unit_price``
    takes the price lists' price for the currency and tier today (none: 422 at
    ``lines[i].unit_price``); an unknown or deactivated product: 422 at ``lines[i].product_id``; an
    unknown, deleted or invisible customer: 422 at ``customer_id``. The number
    (``Q-<year>-<000123>``) is taken once every check has passed."""
    return _answer(app, await app.create(principal, body), 201)


@router.get(
    "/{quotation_id}.pdf",
    response_class=Response,
    summary="The quotation as a PDF",
    responses={200: {"content": {"application/pdf": {}}}, **problems(404)},
)
async def quotation_pdf_file(
    quotation_id: str,
    request: Request,
    principal: CurrentPrincipal,
    app: App,
    lang: Annotated[Literal["zh-CN", "en"], Query(description="The labels' language.")] = "zh-CN",
) -> Response:
    doc = await app.get(principal, quotation_id)
    organisation = request.app.state.kit.settings.sales_organisation_name
    content = quotation_pdf.render(doc, _status(doc, app.today()), organisation, lang)
    return Response(
        content,
        media_type="application/pdf",
        headers={"ETag": etag(int(doc["version"])), "Content-Disposition": f'inline; filename="{doc["number"]}.pdf"'},
    )


@router.get("/{quotation_id}", response_model=QuotationOut, summary="One quotation", responses=problems(404))
async def get_quotation(quotation_id: str, principal: CurrentPrincipal, app: App) -> JSONResponse:
    return _answer(app, await app.get(principal, quotation_id))


@router.get(
    "/{quotation_id}/versions",
    response_model=RevisionList,
    summary="Every revision of a quotation",
    responses=problems(404),
)
async def quotation_versions(quotation_id: str, principal: CurrentPrincipal, app: App) -> RevisionList:
    doc = await app.get(principal, quotation_id)
    today = app.today()
    items = [revision_out(kept, today, False) for kept in doc.get("previous") or []]
    items.append(revision_out(doc, today, True))
    return RevisionList(id=doc["_id"], number=doc["number"], items=items)


@router.patch(
    "/{quotation_id}",
    response_model=QuotationOut,
    summary="Change a draft",
    responses=problems(404, 409, 412, 422, 428),
)
async def patch_quotation(
    quotation_id: str, body: QuotationPatch, request: Request, principal: CurrentPrincipal, app: App
) -> JSONResponse:
    """Only a draft (409 otherwise); ``If-Match`` required. ``lines`` replaces every line."""
    version = expected_version(request, required=True)
    return _answer(app, await app.update(principal, quotation_id, body, version))


@router.post(
    "/{quotation_id}/revise",
    response_model=QuotationOut,
    summary="Start the next revision (same number)",
    responses=problems(404, 409, 412, 422),
)
async def revise_quotation(
    quotation_id: str,
    request: Request,
    principal: CurrentPrincipal,
    app: App,
    body: Annotated[QuotationPatch | None, Body()] = None,
) -> JSONResponse:
    """The current revision is kept read-only (``/versions``); the next is a draft with the
    changes sent (optional). ``If-Match`` optional."""
    version = expected_version(request, required=False)
    return _answer(app, await app.revise(principal, quotation_id, body or QuotationPatch(), version))


def _move(action: str, summary: str, doc: str) -> None:
    async def endpoint(
        quotation_id: str,
        request: Request,
        principal: CurrentPrincipal,
        app: App,
        body: Annotated[Comment | None, Body()] = None,
    ) -> JSONResponse:
        version = expected_version(request, required=False)
        comment = body.comment if body else None
        return _answer(app, await app.move(principal, quotation_id, action, comment, version))

    endpoint.__name__ = f"{action}_quotation"
    endpoint.__doc__ = doc
    router.add_api_route(
        f"/{{quotation_id}}/{action}",
        endpoint,
        methods=["POST"],
        response_model=QuotationOut,
        summary=summary,
        responses=problems(403, 404, 409, 412, 422),
    )


_move("submit", "Submit for approval", "draft -> pending_approval; only when a discount exceeds the threshold.")
_move(
    "approve",
    "Approve the discounts",
    "pending_approval -> approved (quotations:approve; not one's own quotation: 403). Optional comment.",
)
_move(
    "reject",
    "Reject the quotation",
    "pending_approval -> rejected (quotations:approve; not one's own). ``comment`` required.",
)
_move("send", "Send to the customer", "draft (no discount above the threshold) or approved -> sent.")
_move("accept", "The customer accepted", "sent -> accepted (final). Optional comment.")
_move("decline", "The customer declined", "sent -> declined. Optional comment.")
