"""The HTTP API of the customers service (/v1)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict
from pymongo.errors import DuplicateKeyError

from crm_customers.application import history as history_
from crm_customers.application.customers import Customers
from crm_customers.application.duplicates import DuplicateReport
from crm_customers.application.history import redact as redact_history
from crm_customers.application.queries import (
    DEFAULT_SORT,
    CustomerFilter,
    list_customers,
    list_deleted_by,
    neighbours,
)
from crm_customers.application.transfer import Importer, ImportReport, export_csv, record_export
from crm_customers.domain.fields import ensure_query_visible, redact_customer
from crm_customers.domain.model import ContactIn, ContactPatch, CustomerCreate, CustomerPatch
from crm_customers.domain.uscc import InvalidUSCC, validate_uscc
from crm_customers.entrypoints import export_approval
from crm_customers.entrypoints.schemas import (
    AssignIn,
    BulkAssignIn,
    BulkAssignItem,
    BulkAssignOut,
    ContactOut,
    CopyIn,
    CustomerOut,
    CustomerPage,
    DuplicateCheckIn,
    Lookup,
    LookupIn,
    MergeIn,
    NeighbourOut,
    Neighbours,
    OptionalReasonIn,
    ReasonIn,
    SavedViewIn,
    SavedViewOut,
    customer_out,
)
from crm_platform.auth import CurrentPrincipal, Principal
from crm_platform.concurrency import etag, expected_version
from crm_platform.contact_points import InvalidEmail, InvalidPhone, normalise_email, normalise_phone
from crm_platform.errors import Conflict, NotFound, ValidationFailed
from crm_platform.fieldaccess import written_fields
from crm_platform.history import HistoryEntry
from crm_platform.idempotency import IdempotencyKeyHeader, mark_replayed
from crm_platform.listing import PageParams, parse_sort
from crm_platform.openapi import problems
from crm_platform.permissions import Permission

router = APIRouter(prefix="/v1", tags=["customers"])
Document = dict[str, Any]


def customers(request: Request) -> Customers:
    service: Customers = request.app.state.customers
    return service


Service = Annotated[Customers, Depends(customers)]


def _customer_json(principal: Principal, doc: Document, now: datetime) -> dict[str, Any]:
    """The customer as this caller may see it: fields their roles hide are left out, not nulled."""
    return redact_customer(customer_out(doc, now).model_dump(mode="json"), principal)


def _page_json(principal: Principal, page: Any, now: datetime) -> JSONResponse:
    items = [_customer_json(principal, d, now) for d in page.items]
    return JSONResponse({"items": items, "next_cursor": page.next_cursor, "total": page.total})


def _contact_json(principal: Principal, contact: Document) -> dict[str, Any]:
    return principal.fields("contacts").redact(ContactOut(**contact).model_dump(mode="json"))


def _ensure_writable(principal: Principal, body: CustomerCreate | CustomerPatch, *, creating: bool) -> None:
    """Refuse (403) a create or patch that sets customer or contact fields the caller's roles protect."""
    principal.fields("customers").ensure_writable([f for f in _writes(body, creating=creating) if f != "contacts"])
    for contact in getattr(body, "contacts", None) or []:
        principal.fields("contacts").ensure_writable(_writes(contact, creating=True))


def _writes(body: BaseModel, *, creating: bool) -> list[str]:
    """The fields a create or patch body sets (on a create, only those given a value; a custom
    value as ``custom.<key>``)."""
    return written_fields(body.model_dump(exclude_unset=True), creating=creating)


class ListParams(CustomerFilter, PageParams):
    """A customer list's query: the filters and the paging."""

    model_config = ConfigDict(extra="forbid")


def _split(params: ListParams) -> tuple[CustomerFilter, PageParams]:
    filters = CustomerFilter.model_validate(params.model_dump(include=set(CustomerFilter.model_fields)))
    return filters, PageParams.model_validate(params.model_dump(include=set(PageParams.model_fields)))


async def _with_custom(
    filters: CustomerFilter, request: Request, service: Customers, sort: str | None = None
) -> CustomerFilter:
    """``filters`` with the query's ``custom.<key>=<value>`` filters and the ``custom.<key>`` keys
    of ``sort``, checked against the definitions."""
    fields = await service.fieldset()
    query = request.query_params.multi_items()
    return filters.with_custom(fields, query).with_sorts(fields, sort)


def _respond(
    principal: Principal, service: Customers, doc: Document, status: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = _customer_json(principal, doc, service.clock.now())
    return JSONResponse(body, status_code=status, headers={"ETag": etag(doc["version"]), **(headers or {})})


@router.post(
    "/customers",
    status_code=201,
    response_model=CustomerOut,
    summary="Create a customer (refused with 409 if it already exists)",
    responses=problems(409),
)
async def create_customer(
    body: CustomerCreate, principal: CurrentPrincipal, service: Service, key: IdempotencyKeyHeader
) -> JSONResponse:
    _ensure_writable(principal, body, creating=True)
    doc = await service.create_once(principal, body, key)
    return mark_replayed(_respond(principal, service, doc, 201, {"Location": f"/v1/customers/{doc['_id']}"}), key)


@router.post(
    "/customers/lookup",
    response_model=Lookup,
    summary="Many customers by id in one call (cards that show a customer's name): only those you may see",
)
async def lookup(body: LookupIn, principal: CurrentPrincipal, service: Service) -> JSONResponse:
    docs = await service.lookup(principal, body.ids)
    now = service.clock.now()
    found = {doc["_id"] for doc in docs}
    return JSONResponse(
        {
            "items": [_customer_json(principal, doc, now) for doc in docs],
            "missing": [customer_id for customer_id in dict.fromkeys(body.ids) if customer_id not in found],
        }
    )


@router.post(
    "/customers/duplicate-check",
    response_model=DuplicateReport,
    summary="Find existing customers before creating one (查重)",
)
async def duplicate_check(body: DuplicateCheckIn, principal: CurrentPrincipal, service: Service) -> DuplicateReport:
    errors = []
    phones, emails, uscc = [], [], None
    for i, raw in enumerate(body.phones):
        try:
            phones.append(normalise_phone(raw, service.settings.default_phone_region))
        except InvalidPhone as exc:
            errors.append((f"phones[{i}]", str(exc)))
    for i, raw in enumerate(body.emails):
        try:
            emails.append(normalise_email(raw))
        except InvalidEmail as exc:
            errors.append((f"emails[{i}]", str(exc)))
    if body.uscc:
        try:
            uscc = validate_uscc(body.uscc)
        except InvalidUSCC as exc:
            errors.append(("uscc", str(exc)))
    if errors:
        from crm_platform.errors import FieldError

        raise ValidationFailed(
            "; ".join(f"{f}: {r}" for f, r in errors), errors=[FieldError(field=f, reason=r) for f, r in errors]
        )
    if not (body.name or uscc or phones or emails):
        raise ValidationFailed.for_field("name", "give at least a name, USCC, phone or email to check")
    return await service.duplicates.check(kind=body.kind, name=body.name, uscc=uscc, phones=phones, emails=emails)


@router.get(
    "/customers",
    response_model=CustomerPage,
    summary="List customers: filter on any field, sort on up to four keys, page with a cursor",
)
async def list_(
    params: Annotated[ListParams, Query()], request: Request, principal: CurrentPrincipal, service: Service
) -> JSONResponse:
    filters, paging = _split(params)
    filters = await _with_custom(filters, request, service, paging.sort)
    ensure_query_visible(principal, filters.model_dump(), paging.sort, filters.custom)
    return _page_json(principal, await list_customers(service.repo, principal, filters, paging), service.clock.now())


class ExportParams(CustomerFilter):
    model_config = ConfigDict(extra="forbid")

    sort: str | None = None


@router.get(
    "/customers/export.csv",
    summary="Export any list view as CSV (UTF-8 with BOM, opens in Excel); 202 when it needs approval",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
        202: {
            "model": export_approval.ExportRequestOut,
            "description": "Above the export policy's threshold: held as an export request (Location) for approval.",
        },
    },
)
async def export(
    params: Annotated[ExportParams, Query()], request: Request, principal: CurrentPrincipal, service: Service
) -> Response:
    filters = CustomerFilter.model_validate(params.model_dump(include=set(CustomerFilter.model_fields)))
    filters = await _with_custom(filters, request, service, params.sort)
    # Validate the sort before the response starts: an error after the first byte cannot be a problem+json.
    parse_sort(params.sort, filters.sort_fields, DEFAULT_SORT)
    ensure_query_visible(principal, filters.model_dump(), params.sort, filters.custom)
    held, rows = await export_approval.hold_if_needed(request, principal, service, filters, params.sort)
    if held is not None:
        return held  # not sent: an export request awaits approval
    await record_export(service, principal, filters, params.sort, rows)  # for the audit log, before any row leaves
    return StreamingResponse(
        export_csv(service, principal, filters, params.sort),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="customers.csv"'},
    )


@router.post(
    "/customers/import",
    response_model=ImportReport,
    summary="Import customers from CSV; ?dry_run=true reports bad rows and duplicates without writing",
    openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}, "required": True}},
)
async def import_(
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    service: Service,
    key: IdempotencyKeyHeader,
    dry_run: bool = True,
) -> ImportReport:
    raw = await request.body()
    if not raw.strip():
        raise ValidationFailed.for_field("body", "send the CSV file as the request body (Content-Type: text/csv)")
    report = await Importer(service).run(principal, raw, dry_run=dry_run, key=key)
    mark_replayed(response, key)
    return report


@router.get("/customers/{customer_id}", response_model=CustomerOut, summary="One customer with its contacts")
async def get_customer(customer_id: str, principal: CurrentPrincipal, service: Service) -> JSONResponse:
    return _respond(principal, service, await service.get(principal, customer_id))


class NeighbourParams(CustomerFilter):
    """The list the detail view was opened from: its filters and its sort."""

    model_config = ConfigDict(extra="forbid")
    sort: str | None = None


@router.get(
    "/customers/{customer_id}/neighbours",
    response_model=Neighbours,
    summary="The previous and next record in a list view (pass the list's filters and sort)",
)
async def get_neighbours(
    customer_id: str,
    params: Annotated[NeighbourParams, Query()],
    request: Request,
    principal: CurrentPrincipal,
    service: Service,
) -> Neighbours:
    doc = await service.get(principal, customer_id)
    filters = CustomerFilter.model_validate(params.model_dump(include=set(CustomerFilter.model_fields)))
    filters = await _with_custom(filters, request, service, params.sort)
    ensure_query_visible(principal, filters.model_dump(), params.sort, filters.custom)
    before, after = await neighbours(service.repo, principal, filters, params.sort, doc)
    return Neighbours(
        previous=NeighbourOut.model_validate(before) if before else None,
        next=NeighbourOut.model_validate(after) if after else None,
    )


@router.post(
    "/customers/{customer_id}/copy",
    status_code=201,
    response_model=CustomerOut,
    summary="A new customer from this one's profile (a new name is required; contacts are not copied)",
    description="Copies industry, size, address, source, tier, lifecycle stage, website, description and tags; "
    "the body sets the new name and may override any of them. Duplicate checks apply as for any new customer.",
    responses=problems(409),
)
async def copy_customer(
    customer_id: str, body: CopyIn, principal: CurrentPrincipal, service: Service, key: IdempotencyKeyHeader
) -> JSONResponse:
    principal.fields("customers").ensure_writable(_writes(body, creating=True))
    doc = await service.copy(principal, customer_id, body.model_dump(exclude_unset=True), key)
    return mark_replayed(_respond(principal, service, doc, 201, {"Location": f"/v1/customers/{doc['_id']}"}), key)


@router.patch(
    "/customers/{customer_id}",
    response_model=CustomerOut,
    summary="Change fields (send If-Match)",
    responses=problems(409, 412, 423, 428),
)
async def patch_customer(
    customer_id: str, body: CustomerPatch, request: Request, principal: CurrentPrincipal, service: Service
) -> JSONResponse:
    _ensure_writable(principal, body, creating=False)
    doc = await service.update(principal, customer_id, body, expected_version(request, required=True))
    return _respond(principal, service, doc)


@router.delete(
    "/customers/{customer_id}",
    response_model=CustomerOut,
    summary="Move to the recycle bin (customers:delete, as far as the customers scope reaches)",
    responses=problems(409, 412, 423),
)
async def delete_customer(
    customer_id: str,
    request: Request,
    principal: CurrentPrincipal,
    service: Service,
    reason: Annotated[str | None, Query(max_length=500)] = None,
) -> JSONResponse:
    return _respond(
        principal,
        service,
        await service.delete(principal, customer_id, reason, expected_version(request, required=False)),
    )


@router.post(
    "/customers/{customer_id}/restore",
    response_model=CustomerOut,
    summary="Restore from the recycle bin",
    responses=problems(409, 412),
)
async def restore(customer_id: str, request: Request, principal: CurrentPrincipal, service: Service) -> JSONResponse:
    return _respond(
        principal, service, await service.restore(principal, customer_id, expected_version(request, required=False))
    )


@router.get("/recycle-bin", response_model=CustomerPage, summary="Customers in the recycle bin (customers:recycle_bin)")
async def recycle_bin(
    params: Annotated[ListParams, Query()], principal: CurrentPrincipal, service: Service
) -> JSONResponse:
    principal.require(Permission.customers_recycle_bin)
    filters, paging = _split(params)
    ensure_query_visible(principal, filters.model_dump(), paging.sort)
    page = await list_customers(service.repo, principal, filters, paging, status="deleted")
    return _page_json(principal, page, service.clock.now())


@router.get(
    "/my-recycle-bin",
    response_model=CustomerPage,
    summary="The customers you moved to the recycle bin yourself (and may still see), last deleted first",
    description="Anyone who may delete customers: take back your own deletions with "
    "POST /v1/my-recycle-bin/{customer_id}/restore. Managers and admins see the whole bin at /v1/recycle-bin.",
)
async def my_recycle_bin(
    principal: CurrentPrincipal,
    service: Service,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JSONResponse:
    return _page_json(principal, await list_deleted_by(service.repo, principal, cursor, limit), service.clock.now())


@router.post(
    "/my-recycle-bin/{customer_id}/restore",
    response_model=CustomerOut,
    summary="Restore a customer you moved to the recycle bin yourself",
    description="Someone else's deletion is not in your bin (404). The owner's holding limit (409 naming owner, "
    "held, limit and the rule it comes from) and the duplicate check (409) hold as for any restore.",
    responses=problems(409, 412),
)
async def restore_own(
    customer_id: str, request: Request, principal: CurrentPrincipal, service: Service
) -> JSONResponse:
    doc = await service.restore_own(principal, customer_id, expected_version(request, required=False))
    return _respond(principal, service, doc)


@router.delete(
    "/recycle-bin/{customer_id}", status_code=204, summary="Purge for good (customers:purge)", responses=problems(409)
)
async def purge(customer_id: str, principal: CurrentPrincipal, service: Service) -> Response:
    await service.purge(principal, customer_id)
    return Response(status_code=204)


@router.get(
    "/customers/{customer_id}/history",
    response_model=list[HistoryEntry],
    summary="Field-level history: who, when, old and new",
)
async def get_history(
    customer_id: str, principal: CurrentPrincipal, service: Service, request: Request
) -> list[HistoryEntry]:
    doc = await service.get(principal, customer_id)
    return redact_history(await history_.history(request.app.state.kit.event_log, doc), principal)


@router.post(
    "/customers/{customer_id}/contacts",
    status_code=201,
    response_model=ContactOut,
    summary="Add a contact",
    responses=problems(409, 412, 423),
)
async def add_contact(
    customer_id: str,
    body: ContactIn,
    request: Request,
    principal: CurrentPrincipal,
    service: Service,
    key: IdempotencyKeyHeader,
) -> JSONResponse:
    principal.fields("contacts").ensure_writable(_writes(body, creating=True))
    doc, contact = await service.add_contact(
        principal, customer_id, body, expected_version(request, required=False), key
    )
    return mark_replayed(
        JSONResponse(_contact_json(principal, contact), status_code=201, headers={"ETag": etag(doc["version"])}),
        key,
    )


@router.patch(
    "/customers/{customer_id}/contacts/{contact_id}",
    response_model=ContactOut,
    summary="Change a contact (send the customer's If-Match)",
    responses=problems(409, 412, 423, 428),
)
async def patch_contact(
    customer_id: str,
    contact_id: str,
    body: ContactPatch,
    request: Request,
    principal: CurrentPrincipal,
    service: Service,
) -> JSONResponse:
    principal.fields("contacts").ensure_writable(_writes(body, creating=False))
    doc, contact = await service.update_contact(
        principal, customer_id, contact_id, body, expected_version(request, required=True)
    )
    return JSONResponse(_contact_json(principal, contact), headers={"ETag": etag(doc["version"])})


@router.delete(
    "/customers/{customer_id}/contacts/{contact_id}",
    response_model=CustomerOut,
    summary="Remove a contact",
    responses=problems(409, 412, 423),
)
async def delete_contact(
    customer_id: str, contact_id: str, request: Request, principal: CurrentPrincipal, service: Service
) -> JSONResponse:
    return _respond(
        principal,
        service,
        await service.remove_contact(principal, customer_id, contact_id, expected_version(request, required=False)),
    )


@router.post(
    "/customers/bulk-assign",
    response_model=BulkAssignOut,
    summary="Give several customers to one owner (customers:assign), each with its own outcome",
    description="Refused whole (409, nothing assigned) when the customers would take the owner past their holding "
    "limit: the problem names the owner, what they hold, the limit, the rule it comes from (limit_rule), how many "
    "of the customers would come to them (requested: assignable, not theirs yet) and how many too many "
    "(over_by). Otherwise each customer is assigned on its own; one "
    "that cannot be (locked, out of your reach, gone) is reported with the status assigning it alone would get, "
    "and does not stop the others.",
    responses=problems(409, 422),
)
async def bulk_assign(body: BulkAssignIn, principal: CurrentPrincipal, service: Service) -> BulkAssignOut:
    outcomes = await service.assign_many(
        principal, body.customer_ids, body.owner_id, body.department_id, body.department_path, body.reason
    )
    items = [BulkAssignItem(customer_id=o.customer_id, outcome=o.outcome, status=o.status, detail=o.detail)
             for o in outcomes]  # fmt: skip
    return BulkAssignOut(
        owner_id=body.owner_id,
        assigned=sum(o.outcome == "assigned" for o in outcomes),
        unchanged=sum(o.outcome == "unchanged" for o in outcomes),
        failed=sum(o.outcome == "failed" for o in outcomes),
        items=items,
    )


@router.post(
    "/customers/{customer_id}/assign",
    response_model=CustomerOut,
    summary="Give the customer to another owner (customers:assign)",
    responses=problems(409, 412, 423),
)
async def assign(
    customer_id: str, body: AssignIn, request: Request, principal: CurrentPrincipal, service: Service
) -> JSONResponse:
    doc = await service.assign(
        principal,
        customer_id,
        body.owner_id,
        body.department_id,
        body.department_path,
        body.reason,
        expected_version(request, required=False),
    )
    return _respond(principal, service, doc)


@router.post(
    "/customers/{customer_id}/release",
    response_model=CustomerOut,
    summary="Put the customer into the public pool (公海)",
    responses=problems(409, 412, 423),
)
async def release(
    customer_id: str, body: ReasonIn, request: Request, principal: CurrentPrincipal, service: Service
) -> JSONResponse:
    return _respond(
        principal,
        service,
        await service.release(principal, customer_id, body.reason, expected_version(request, required=False)),
    )


@router.post(
    "/customers/{customer_id}/claim",
    response_model=CustomerOut,
    summary="Claim a customer from the public pool; of two claims at once exactly one wins",
    responses=problems(409, 423),
)
async def claim(customer_id: str, principal: CurrentPrincipal, service: Service) -> JSONResponse:
    return _respond(principal, service, await service.claim(principal, customer_id))


@router.post(
    "/customers/{customer_id}/lock",
    response_model=CustomerOut,
    summary="Lock: read-only until unlocked",
    responses=problems(409, 412, 423),
)
async def lock(
    customer_id: str,
    request: Request,
    principal: CurrentPrincipal,
    service: Service,
    body: Annotated[OptionalReasonIn | None, Body()] = None,
) -> JSONResponse:
    return _respond(
        principal,
        service,
        await service.lock(
            principal, customer_id, body.reason if body else None, expected_version(request, required=False)
        ),
    )


@router.post(
    "/customers/{customer_id}/unlock", response_model=CustomerOut, summary="Unlock", responses=problems(409, 412)
)
async def unlock(customer_id: str, request: Request, principal: CurrentPrincipal, service: Service) -> JSONResponse:
    return _respond(
        principal, service, await service.unlock(principal, customer_id, expected_version(request, required=False))
    )


@router.post(
    "/customers/{customer_id}/merge",
    response_model=CustomerOut,
    summary="Merge a duplicate into this customer (customers:merge)",
    responses=problems(409, 412, 423),
)
async def merge(
    customer_id: str, body: MergeIn, request: Request, principal: CurrentPrincipal, service: Service
) -> JSONResponse:
    return _respond(
        principal,
        service,
        await service.merge(principal, customer_id, body.duplicate_id, expected_version(request, required=False)),
    )


# --- saved views -------------------------------------------------------------------------

views_router = APIRouter(prefix="/v1/customer-views", tags=["saved views"])


@views_router.get("", response_model=list[SavedViewOut], summary="My saved list views")
async def list_views(principal: CurrentPrincipal, service: Service) -> list[dict[str, Any]]:
    cursor = service.repo.views.find({"owner_id": principal.user_id}).sort([("name", 1)])
    return [{**d, "id": d["_id"]} async for d in cursor]


@views_router.post(
    "",
    status_code=201,
    response_model=SavedViewOut,
    summary="Save a list view (its filters and sort)",
    responses=problems(409),
)
async def save_view(body: SavedViewIn, principal: CurrentPrincipal, service: Service) -> dict[str, Any]:
    try:
        ListParams.model_validate({k: v for k, v in body.query.items() if k not in ("cursor",)})
    except Exception as exc:
        raise ValidationFailed.for_field("query", f"not a valid customer list query: {exc}") from exc
    doc = {
        "_id": str(uuid.uuid4()),
        "owner_id": principal.user_id,
        "name": body.name,
        "query": body.query,
        "created_at": service.clock.now(),
    }
    try:
        await service.repo.views.insert_one(doc)
    except DuplicateKeyError as exc:
        raise Conflict(f"You already have a view named '{body.name}'.") from exc
    return {**doc, "id": doc["_id"]}


@views_router.delete("/{view_id}", status_code=204, summary="Delete one of my saved views", responses=problems(409))
async def delete_view(view_id: str, principal: CurrentPrincipal, service: Service) -> Response:
    result = await service.repo.views.delete_one({"_id": view_id, "owner_id": principal.user_id})
    if not result.deleted_count:
        raise NotFound(f"You have no saved view with id {view_id}.")
    return Response(status_code=204)
