"""The HTTP API of service tickets (/v1/tickets, /v1/customers/{id}/tickets)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from crm_platform.auth import CurrentPrincipal
from crm_platform.concurrency import expected_version, versioned
from crm_platform.listing import PageParams
from crm_platform.openapi import problems
from crm_sales.application.tickets import Tickets
from crm_sales.domain import tickets as rules
from crm_sales.domain.tickets import AssignIn, CloseIn, ReopenIn, ReplyIn, ResolveIn, ReturnVisitIn, TicketIn

Document = dict[str, Any]
SlaState = Literal["on_track", "at_risk", "breached", "met"]
TicketSort = Literal["-opened_at", "resolution_due", "priority"]


class Reply(BaseModel):
    body: str
    public: bool
    by: str
    at: datetime


class ReturnVisit(BaseModel):
    satisfaction: int
    comment: str | None = None
    channel: str
    by: str
    at: datetime


class SlaTarget(BaseModel):
    due_at: datetime
    escalate_at: datetime = Field(description="When the scheduler escalates it if it is still open.")
    state: SlaState = Field(description="met / breached once done; before: on_track, at_risk or breached.")
    escalated_at: datetime | None = None
    breached_at: datetime | None = None


class TicketOut(BaseModel):
    id: str
    number: str
    customer_id: str
    customer_name: str | None = None
    contract_id: str | None = None
    contact_id: str | None = None
    feedback_id: str | None = None
    source: str
    category: str
    priority: str
    subject: str
    description: str | None = None
    status: str
    owner_id: str | None = Field(default=None, description="The assignee.")
    opened_by: str
    department_path: str | None = None
    opened_at: datetime
    first_response: SlaTarget
    resolution_sla: SlaTarget
    first_responded_at: datetime | None = None
    resolved_at: datetime | None = None
    resolution: str | None = None
    return_visit: ReturnVisit | None = None
    satisfaction: int | None = None
    closed_at: datetime | None = None
    no_visit_reason: str | None = None
    escalation_level: int
    breached: bool = Field(description="An SLA breach was recorded (by the scheduler or a late answer).")
    reopen_count: int = 0
    replies: list[Reply] | None = Field(default=None, description="Only on the single ticket, not in lists.")
    updated_at: datetime
    version: int


class TicketPage(BaseModel):
    items: list[TicketOut]
    next_cursor: str | None = None


class TicketFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["open", "in_progress", "resolved", "closed"] | None = None
    priority: rules.Priority | None = None
    assignee_id: str | None = Field(default=None, max_length=100)
    customer_id: str | None = Field(default=None, max_length=100)
    breached: bool | None = None
    sort: TicketSort = Field(
        default="-opened_at",
        description="-opened_at (newest first), resolution_due (due soonest first: what breaks next) or "
        "priority (urgent first, then the resolution due soonest).",
    )
    cursor: str | None = Field(default=None, description="next_cursor of the previous page.")
    limit: int = Field(default=50, ge=1, le=200)

    def conditions(self) -> Document:
        out: Document = {}
        for name, stored in (("status", "status"), ("priority", "priority"), ("customer_id", "customer_id")):
            if getattr(self, name) is not None:
                out[stored] = getattr(self, name)
        if self.assignee_id is not None:
            out["owner_id"] = self.assignee_id
        if self.breached is not None:
            out["breached"] = self.breached
        return out


def _target(doc: Document, target: rules.Target, now: datetime) -> SlaTarget:
    return SlaTarget(
        due_at=rules.due_at(doc, target),
        escalate_at=rules.warn_at(doc, target),
        state=rules.sla_state(doc, target, now),  # type: ignore[arg-type]
        escalated_at=(doc.get("escalations") or {}).get(target),
        breached_at=(doc.get("breaches") or {}).get(target),
    )


def ticket_out(doc: Document, now: datetime, with_replies: bool = True) -> TicketOut:
    return TicketOut(
        id=doc["_id"],
        number=doc["number"],
        customer_id=doc["customer_id"],
        customer_name=doc.get("customer_name"),
        contract_id=doc.get("contract_id"),
        contact_id=doc.get("contact_id"),
        feedback_id=doc.get("feedback_id"),
        source=doc["source"],
        category=doc["category"],
        priority=doc["priority"],
        subject=doc["subject"],
        description=doc.get("description"),
        status=doc["status"],
        owner_id=doc.get("owner_id"),
        opened_by=doc["created_by"],
        department_path=doc.get("department_path"),
        opened_at=doc["opened_at"],
        first_response=_target(doc, "first_response", now),
        resolution_sla=_target(doc, "resolution", now),
        first_responded_at=doc.get("first_responded_at"),
        resolved_at=doc.get("resolved_at"),
        resolution=doc.get("resolution"),
        return_visit=doc.get("return_visit"),
        satisfaction=doc.get("satisfaction"),
        closed_at=doc.get("closed_at"),
        no_visit_reason=doc.get("no_visit_reason"),
        escalation_level=int(doc.get("escalation_level") or 0),
        breached=bool(doc.get("breached")),
        reopen_count=int(doc.get("reopen_count") or 0),
        replies=[Reply(**r) for r in doc.get("replies") or []] if with_replies else None,
        updated_at=doc["updated_at"],
        version=int(doc["version"]),
    )


def tickets(request: Request) -> Tickets:
    found: Tickets = request.app.state.tickets
    return found


App = Annotated[Tickets, Depends(tickets)]
router = APIRouter(prefix="/v1/tickets", tags=["tickets"])
customer_router = APIRouter(prefix="/v1/customers", tags=["tickets"])


def _answer(app: Tickets, doc: Document, status: int = 200) -> JSONResponse:
    return versioned(
        ticket_out(doc, app.clock.now()), doc, status, location=f"/v1/tickets/{doc['_id']}" if status == 201 else None
    )


async def _page(app: Tickets, principal: Any, params: TicketFilter) -> TicketPage:
    paging = PageParams(sort=",".join(rules.SORTS[params.sort]), cursor=params.cursor, limit=params.limit)
    page = await app.page(principal, params.conditions(), paging)
    now = app.clock.now()
    return TicketPage(items=[ticket_out(d, now, False) for d in page.items], next_cursor=page.next_cursor)


@router.post("", status_code=201, response_model=TicketOut, summary="Open a service ticket", responses=problems(422))
async def open_ticket(body: TicketIn, principal: CurrentPrincipal, app: App) -> JSONResponse:
    """The caller opens it and is its assignee until it is assigned; the SLA targets of its
    priority are fixed now. An unknown, deleted or merged customer: 422 at ``customer_id``."""
    return _answer(app, await app.open(principal, body), 201)


@router.get("", response_model=TicketPage, summary="Tickets, filtered, sorted and paged")
async def list_tickets(params: Annotated[TicketFilter, Query()], principal: CurrentPrincipal, app: App) -> TicketPage:
    """Those the caller sees (assigned to or opened by them, or in a department their tickets
    scope reaches), newest first, by cursor."""
    return await _page(app, principal, params)


@customer_router.get("/{customer_id}/tickets", response_model=TicketPage, summary="A customer's tickets (newest first)")
async def customer_tickets(
    customer_id: str,
    principal: CurrentPrincipal,
    app: App,
    cursor: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    sort: Annotated[TicketSort, Query()] = "-opened_at",
) -> TicketPage:
    params = TicketFilter(customer_id=customer_id, sort=sort, cursor=cursor, limit=limit)
    return await _page(app, principal, params)


@router.get("/{ticket_id}", response_model=TicketOut, summary="One ticket", responses=problems(404))
async def get_ticket(ticket_id: str, principal: CurrentPrincipal, app: App) -> JSONResponse:
    return _answer(app, await app.get(principal, ticket_id))


ACTION = problems(403, 404, 409, 412, 422)


@router.post("/{ticket_id}/assign", response_model=TicketOut, summary="Assign the ticket", responses=ACTION)
async def assign_ticket(
    ticket_id: str, body: AssignIn, request: Request, principal: CurrentPrincipal, app: App
) -> JSONResponse:
    """tickets:assign. ``If-Match`` optional (412 when stale) on every change."""
    return _answer(app, await app.assign(principal, ticket_id, body, expected_version(request, required=False)))


@router.post("/{ticket_id}/replies", response_model=TicketOut, summary="Reply to the ticket", responses=ACTION)
async def reply_ticket(
    ticket_id: str, body: ReplyIn, request: Request, principal: CurrentPrincipal, app: App
) -> JSONResponse:
    """The first reply sets ``first_responded_at`` (the first-response target) and moves an open
    ticket to in_progress; ``public: false`` is an internal note."""
    return _answer(app, await app.reply(principal, ticket_id, body, expected_version(request, required=False)))


@router.post("/{ticket_id}/resolve", response_model=TicketOut, summary="Resolve the ticket", responses=ACTION)
async def resolve_ticket(
    ticket_id: str, body: ResolveIn, request: Request, principal: CurrentPrincipal, app: App
) -> JSONResponse:
    """open or in_progress -> resolved; ``resolution`` required."""
    return _answer(app, await app.resolve(principal, ticket_id, body, expected_version(request, required=False)))


@router.post("/{ticket_id}/reopen", response_model=TicketOut, summary="Reopen a resolved ticket", responses=ACTION)
async def reopen_ticket(
    ticket_id: str,
    request: Request,
    principal: CurrentPrincipal,
    app: App,
    body: Annotated[ReopenIn | None, Body()] = None,
) -> JSONResponse:
    """resolved -> in_progress within the reopen window (``CRM_SALES_TICKET_REOPEN_DAYS``; 409
    after); the return visit of the resolution is cleared."""
    version = expected_version(request, required=False)
    return _answer(app, await app.reopen(principal, ticket_id, body or ReopenIn(), version))


@router.post(
    "/{ticket_id}/return-visits", response_model=TicketOut, summary="Record the return visit (回访)", responses=ACTION
)
async def return_visit_ticket(
    ticket_id: str, body: ReturnVisitIn, request: Request, principal: CurrentPrincipal, app: App
) -> JSONResponse:
    """After resolve: the customer's satisfaction 1..5, a comment and the channel; one per resolution."""
    version = expected_version(request, required=False)
    return _answer(app, await app.return_visit(principal, ticket_id, body, version))


@router.post("/{ticket_id}/close", response_model=TicketOut, summary="Close the ticket", responses=ACTION)
async def close_ticket(
    ticket_id: str,
    request: Request,
    principal: CurrentPrincipal,
    app: App,
    body: Annotated[CloseIn | None, Body()] = None,
) -> JSONResponse:
    """resolved -> closed (final); needs a return visit, or ``no_visit_reason`` (422 without)."""
    version = expected_version(request, required=False)
    return _answer(app, await app.close(principal, ticket_id, body or CloseIn(), version))


ROUTERS = (router, customer_router)
