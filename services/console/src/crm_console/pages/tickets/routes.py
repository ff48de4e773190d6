"""Service tickets (工单) over the sales service's ``/v1/tickets``.

* ``/tickets``: the tickets the person sees (status, priority, assignee and breached filters; newest
  first, the one order the API offers; keyset pages over ``next_cursor``).
* ``/tickets/new?customer_id=``: open one (source, category, priority, subject, description,
  contract); each refusal at its input.
* ``/tickets/{id}``: the header with both SLA targets, their state and due moments in the person's
  time zone, the replies (public or internal) and a reply form, and the moves (assign, resolve,
  reopen, return visit, close) as forms sending ``If-Match``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_console.lists import list_page, require
from crm_console.pages.customers.people import owner_choices, owner_names, people_filter
from crm_console.registry import may
from crm_console.upstreams import UpstreamProblem, UpstreamUnavailable
from crm_console.web import Api, api, render

router = APIRouter(prefix="/tickets")
Client = Annotated[Api, Depends(api)]
PAGE_SIZE = 50
STATUSES = ("open", "in_progress", "resolved", "closed")
PRIORITIES = ("urgent", "high", "normal", "low")
SOURCES = ("agent", "phone", "email", "web", "wechat", "complaint")
CATEGORIES = ("installation", "fault", "consultation", "complaint", "billing", "maintenance", "other")
CHANNELS = ("phone", "wechat", "email", "visit", "sms", "other")
FILTERS = ("status", "priority", "assignee_id", "customer_id", "breached")
OPEN_FIELDS = ("customer_id", "contract_id", "source", "category", "priority", "subject", "description")
#: Each action: the API path, the form's inputs (``<action>.<name>``) and the permission it needs.
ACTIONS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "reply": ("replies", ("body", "public"), "tickets:manage"),
    "assign": ("assign", ("assignee_id",), "tickets:assign"),
    "resolve": ("resolve", ("resolution",), "tickets:manage"),
    "reopen": ("reopen", ("reason",), "tickets:manage"),
    "visit": ("return-visits", ("satisfaction", "comment", "channel"), "tickets:manage"),
    "close": ("close", ("no_visit_reason",), "tickets:manage"),
}


def moves_for(ticket: dict[str, Any], user: Any) -> list[str]:
    """The forms shown: those the status allows and the person's permissions grant."""
    status = str(ticket.get("status"))
    allowed = {
        "open": ("reply", "assign", "resolve"),
        "in_progress": ("reply", "assign", "resolve"),
        "resolved": ("reply", "reopen", "close")
        if ticket.get("return_visit")
        else ("reply", "reopen", "visit", "close"),
    }.get(status, ())
    return [m for m in allowed if may(user, ACTIONS[m][2])]


@router.get("", include_in_schema=False)
async def tickets(request: Request, client: Client) -> HTMLResponse:
    page = await list_page(request, client, "sales", "/v1/tickets", FILTERS, PAGE_SIZE)
    context = page.context() | {
        "who": await owner_names(client, (t.get("owner_id") for t in page.items)),
        "assignees": await people_filter(client, page.filters.get("assignee_id")),
        "statuses": STATUSES,
        "priorities": PRIORITIES,
    }
    return render(request, "tickets/list.html", context)


async def contract_choices(client: Api, customer_id: str) -> list[tuple[str, str]] | None:
    """The customer's contracts the person sees, by number and title, for the form's contract
    picker; None (a free box) when there is no customer yet or the contracts cannot be listed."""
    if not customer_id or not may(client.session.user, "contracts:view"):
        return None
    try:
        page = await client.get("sales", "/v1/contracts", params={"customer_id": customer_id, "limit": 100})
    except (UpstreamProblem, UpstreamUnavailable):
        return None
    return [(str(c["id"]), f"{c.get('number')} · {c.get('title') or ''}".strip(" ·")) for c in page.get("items") or []]


async def _new_form(
    request: Request,
    client: Api,
    values: dict[str, str],
    errors: dict[str, str] | None = None,
    refused: str = "",
    status: int = 200,
) -> HTMLResponse:
    context = {
        "values": values,
        "contracts": await contract_choices(client, values.get("customer_id", "")),
        "sources": SOURCES,
        "categories": CATEGORIES,
        "priorities": PRIORITIES,
        "field_errors": errors or {},
        "refused": refused,
    }
    return render(request, "tickets/new.html", context, status_code=status)


@router.get("/new", include_in_schema=False)
async def new_ticket(request: Request, client: Client, customer_id: str = "", contract_id: str = "") -> HTMLResponse:
    require(client, "tickets:manage")
    values = dict.fromkeys(OPEN_FIELDS, "") | {
        "customer_id": customer_id,
        "contract_id": contract_id,
        "source": "agent",
        "category": "fault",
        "priority": "normal",
    }
    return await _new_form(request, client, values)


@router.post("/new", include_in_schema=False)
async def open_ticket(request: Request, client: Client) -> Response:
    require(client, "tickets:manage")
    form = await request.form()
    values = {name: str(form.get(name) or "").strip() for name in OPEN_FIELDS}
    body = {name: value for name, value in values.items() if value}
    try:
        answer = await client.send("sales", "POST", "/v1/tickets", json=body)
    except UpstreamProblem as problem:
        if problem.status not in (403, 409, 422):
            raise
        return await _new_form(
            request, client, values, problem.field_errors(), client.problem_text(problem), problem.status
        )
    return RedirectResponse(f"/tickets/{answer.json()['id']}?done=opened", status_code=303)


async def _page(
    request: Request,
    client: Api,
    ticket_id: str,
    *,
    done: str = "",
    errors: dict[str, str] | None = None,
    refused: str = "",
    posted: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    answer = await client.send("sales", "GET", f"/v1/tickets/{ticket_id}")
    ticket = answer.json() | {"etag": answer.headers.get("ETag", "")}
    moves = moves_for(ticket, client.session.user)
    people = [ticket.get("owner_id"), ticket.get("opened_by"), (ticket.get("return_visit") or {}).get("by")]
    people += [reply.get("by") for reply in ticket.get("replies") or []]
    who = await owner_names(client, people)
    context = {
        "tk": ticket,
        "who": who,
        "assignees": await assignee_choices(client, ticket, who) if "assign" in moves else [],
        "moves": moves,
        "channels": CHANNELS,
        "posted": posted or {},
        "done": done,
        "field_errors": errors or {},
        "refused": refused,
    }
    return render(request, "tickets/detail.html", context, status_code=status_code)


async def assignee_choices(client: Api, ticket: dict[str, Any], who: dict[str, str]) -> list[tuple[str, str]]:
    """The people to assign to, by name (oneself first, then those the directory lists to the
    person); the current assignee stays offered even when the list leaves them out."""
    user = client.session.user
    choices = await owner_choices(client, user.id if user else "", user.name if user else "", True)
    current = ticket.get("owner_id")
    if current and current not in {value for value, _label in choices}:
        choices.append((str(current), who.get(str(current), str(current))))
    return choices


@router.get("/{ticket_id}", include_in_schema=False)
async def ticket(request: Request, ticket_id: str, client: Client, done: str = "") -> HTMLResponse:
    return await _page(request, client, ticket_id, done=done)


@router.post("/{ticket_id}/{action}", include_in_schema=False)
async def move(request: Request, ticket_id: str, action: str, client: Client) -> Response:
    """One change with the page's ``If-Match``; a refusal (409 wrong status, 422 at its input,
    403 without the permission) is shown on the ticket's page at the input it names."""
    if action not in ACTIONS:
        return Response(status_code=404)
    path, fields, _permission = ACTIONS[action]
    form = await request.form()
    posted = {f"{action}.{name}": str(form.get(f"{action}.{name}") or "").strip() for name in fields}
    body: dict[str, Any] = {name: posted[f"{action}.{name}"] for name in fields if posted[f"{action}.{name}"]}
    if action == "reply":
        body["public"] = posted["reply.public"] == "true"
        body.setdefault("body", "")
    elif action == "resolve":
        body.setdefault("resolution", "")
    elif action == "assign":
        body.setdefault("assignee_id", "")
    headers = {"If-Match": str(form["etag"])} if form.get("etag") else None
    try:
        await client.send("sales", "POST", f"/v1/tickets/{ticket_id}/{path}", json=body or None, headers=headers)
    except UpstreamProblem as problem:
        if problem.status not in (403, 409, 422):
            raise
        errors = {f"{action}.{name}": reason for name, reason in problem.field_errors().items()}
        return await _page(
            request,
            client,
            ticket_id,
            errors=errors,
            refused=client.problem_text(problem),
            posted=posted,
            status_code=problem.status,
        )
    return RedirectResponse(f"/tickets/{ticket_id}?done={action}", status_code=303)
