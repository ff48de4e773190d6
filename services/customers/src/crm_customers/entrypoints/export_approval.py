"""The HTTP API of export approval (/v1/customers/export-policy, /v1/customers/export-requests)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from crm_customers.application.customers import Customers
from crm_customers.application.export_approval import ExportApprovals
from crm_customers.application.queries import CustomerFilter
from crm_customers.application.transfer import count_export_rows, export_csv
from crm_customers.domain.export_approval import needs_approval, snapshot
from crm_customers.domain.fields import ensure_query_visible
from crm_platform.auth import CurrentPrincipal, Principal
from crm_platform.concurrency import etag, expected_version
from crm_platform.contracts.export_approval import ExportRequestStatus
from crm_platform.openapi import problems
from crm_platform.permissions import Permission, granted

router = APIRouter(prefix="/v1", tags=["export approval"])
Document = dict[str, Any]


def approvals(request: Request) -> ExportApprovals:
    service: ExportApprovals = request.app.state.export_approvals
    return service


def customers(request: Request) -> Customers:
    service: Customers = request.app.state.customers
    return service


Approvals = Annotated[ExportApprovals, Depends(approvals)]
Service = Annotated[Customers, Depends(customers)]


def exempt(request: Request, principal: Principal) -> bool:
    """Who answers export requests is never held: their exports stream at once, as before."""
    return Permission.customers_export_approve in granted(principal.roles, request.app.state.kit.roles)


def _moment(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


# --- the policy -------------------------------------------------------------------------------------


class PolicyChange(BaseModel):
    at: datetime
    by: str
    approval_above_rows: int | None
    previous: int | None


class PolicyOut(BaseModel):
    approval_above_rows: int | None = Field(
        description="A customers export counting more rows than this is held for approval; null: approval is off."
    )
    version: int
    updated_by: str | None = None
    updated_at: datetime | None = None
    history: list[PolicyChange] = Field(description="Every change, oldest first.")


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approval_above_rows: int | None = Field(
        ge=0, le=10_000_000, description="Exports above this many rows need approval; null turns approval off."
    )


def policy_out(doc: Document) -> PolicyOut:
    return PolicyOut(
        approval_above_rows=doc.get("approval_above_rows"),
        version=int(doc["version"]),
        updated_by=doc.get("updated_by"),
        updated_at=_moment(doc.get("updated_at_ms")),
        history=[
            PolicyChange(
                at=_moment(h["at_ms"]) or datetime.fromtimestamp(0, UTC),
                by=h["by"],
                approval_above_rows=h.get("approval_above_rows"),
                previous=h.get("previous"),
            )
            for h in doc.get("history", [])
        ],
    )


@router.get("/customers/export-policy", response_model=PolicyOut, summary="The export approval threshold")
async def get_policy(response: Response, service: Approvals) -> PolicyOut:
    doc = await service.policy()
    response.headers["ETag"] = etag(int(doc["version"]))
    return policy_out(doc)


@router.put(
    "/customers/export-policy",
    response_model=PolicyOut,
    summary="Set the export approval threshold (null: off); If-Match optional",
    responses=problems(412, 422),
)
async def put_policy(
    body: PolicyIn, request: Request, response: Response, principal: CurrentPrincipal, service: Approvals
) -> PolicyOut:
    doc = await service.set_policy(principal, body.approval_above_rows, expected_version(request, required=False))
    response.headers["ETag"] = etag(int(doc["version"]))
    return policy_out(doc)


# --- requests ---------------------------------------------------------------------------------------


class ExportRequestOut(BaseModel):
    id: str
    requester_id: str
    requester_department_path: str | None
    filter: dict[str, Any]
    sort: str | None
    rows: int = Field(description="Customers the filter matched when the export was requested.")
    threshold: int
    status: ExportRequestStatus
    requested_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    comment: str | None = None
    valid_until: datetime | None = Field(default=None, description="Until when the approved export can be downloaded.")
    downloads: int = 0
    download_url: str | None = Field(default=None, description="For the requester, once approved.")


class ExportRequestList(BaseModel):
    items: list[ExportRequestOut]


class AnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str | None = Field(default=None, max_length=1000)


def request_out(doc: Document) -> ExportRequestOut:
    """The request as the API shows it: its event snapshot, and where to download it once approved."""
    approved = doc["status"] == "approved"
    return ExportRequestOut(
        id=doc["_id"],
        **snapshot(doc).model_dump(exclude={"request_id"}),
        download_url=f"/v1/customers/export-requests/{doc['_id']}/download" if approved else None,
    )


def held(doc: Document) -> JSONResponse:
    """202: the export was not sent; it waits for approval at the request's location."""
    location = f"/v1/customers/export-requests/{doc['_id']}"
    return JSONResponse(
        status_code=202, content=request_out(doc).model_dump(mode="json"), headers={"Location": location}
    )


@router.get(
    "/customers/export-requests",
    response_model=ExportRequestList,
    summary="My export requests, newest first (the latest 50)",
)
async def my_requests(principal: CurrentPrincipal, service: Approvals) -> ExportRequestList:
    return ExportRequestList(items=[request_out(d) for d in await service.mine(principal)])


@router.get(
    "/customers/export-requests/pending",
    response_model=ExportRequestList,
    summary="Pending export requests I may answer (managers: from their departments; admins: all), oldest first",
)
async def pending_requests(principal: CurrentPrincipal, service: Approvals) -> ExportRequestList:
    return ExportRequestList(items=[request_out(d) for d in await service.pending_for(principal)])


@router.get(
    "/customers/export-requests/{request_id}",
    response_model=ExportRequestOut,
    summary="One export request (its requester, or an approver who may answer it)",
    responses=problems(404),
)
async def get_request(request_id: str, principal: CurrentPrincipal, service: Approvals) -> ExportRequestOut:
    return request_out(await service.get(principal, request_id))


@router.post(
    "/customers/export-requests/{request_id}/approve",
    response_model=ExportRequestOut,
    summary="Approve an export request, with a comment (downloadable by the requester for a limited time)",
    responses=problems(403, 404, 409),
)
async def approve(request_id: str, body: AnswerIn, principal: CurrentPrincipal, service: Approvals) -> ExportRequestOut:
    return request_out(await service.answer(principal, request_id, True, body.comment))


@router.post(
    "/customers/export-requests/{request_id}/reject",
    response_model=ExportRequestOut,
    summary="Reject an export request, with a comment",
    responses=problems(403, 404, 409),
)
async def reject(request_id: str, body: AnswerIn, principal: CurrentPrincipal, service: Approvals) -> ExportRequestOut:
    return request_out(await service.answer(principal, request_id, False, body.comment))


@router.get(
    "/customers/export-requests/{request_id}/download",
    summary="Download an approved export (the requester; the filter as requested, the rows as they are now)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}, **problems(404, 409)},
)
async def download(
    request_id: str, principal: CurrentPrincipal, service: Approvals, customers_service: Service
) -> StreamingResponse:
    request = await service.downloadable(principal, request_id)
    asked: dict[str, Any] = request.get("filter") or {}
    sort = request.get("sort")
    # The custom.<key> filters as asked and a custom field sort, read again against today's
    # definitions (a field archived or no longer sortable since is a 422 naming it: the approved
    # list cannot be rebuilt), and still visible to the caller.
    fields = await customers_service.fieldset()
    custom = [(name, str(text)) for name, text in asked.items() if name.startswith("custom.")]
    filters = CustomerFilter.model_validate(asked).with_custom(fields, custom).with_sorts(fields, sort)
    ensure_query_visible(principal, filters.model_dump(), sort, filters.custom)
    rows = await count_export_rows(customers_service, principal, filters)
    await service.download(principal, request_id, rows)  # for the audit log, before any row leaves
    return StreamingResponse(
        export_csv(customers_service, principal, filters, sort),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="customers.csv"'},
    )


async def hold_if_needed(
    request: Request, principal: Principal, customers_service: Customers, filters: CustomerFilter, sort: str | None
) -> tuple[JSONResponse | None, int | None]:
    """For ``GET /v1/customers/export.csv``: with approval on, an export above the threshold by
    someone who does not answer requests becomes a pending request (202 and its location).
    Otherwise (None, the rows if they were counted here, so the export record need not count again)."""
    service: ExportApprovals = request.app.state.export_approvals
    threshold = await service.threshold()
    if threshold is None or exempt(request, principal):
        return None, None
    rows = await count_export_rows(customers_service, principal, filters)
    if not needs_approval(threshold, rows, exempt=False):
        return None, rows
    doc = await service.hold(principal, filters.described(), sort, rows, threshold)
    return held(doc), rows
