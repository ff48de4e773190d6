"""Leads pages over the leads service's public API (``/v1/leads``).

* ``/leads``: the leads the user reaches (their own, their scope's, the pool), filtered by status,
  source, campaign and pool, paged with the API's ``next_cursor``; ``/leads/pool`` the pool alone,
  each row with a Claim button (of two claiming at once one wins: the other is told so).
* ``/leads/new``: a new lead; the API's 422 and 409 (duplicate: whose it is) shown at the fields.
* ``/leads/{id}``: the lead, its edit form (If-Match), status moves, release, assign, history and
  the Convert form (``POST /v1/leads/{id}/convert``, for a qualified lead and ``leads:convert``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict

from crm_console.pages.leads.scoring import SORTS, lead_score, percent
from crm_console.registry import may
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, render

router = APIRouter(prefix="/leads")

PAGE_SIZE = 20
STATUSES = ("new", "contacted", "qualified", "disqualified", "converting", "converted")
SOURCES = ("web", "campaign", "referral", "exhibition", "cold_call", "purchased_list", "partner", "other")
TEXT_FIELDS = ("company_name", "contact_name", "source", "campaign_id", "region", "industry", "notes")
LIST_FIELDS = ("phones", "emails")
#: The status moves a person makes on the lead page (the API refuses any other with 409).
MOVES = {
    "new": ("contacted", "disqualified"),
    "contacted": ("qualified", "disqualified"),
    "qualified": ("disqualified",),
}
MOVES["disqualified"] = ("new",)
Document = dict[str, Any]


class LeadQuery(BaseModel):
    """The list's filters, passed on to ``GET /v1/leads`` under the same names (empty ones left out)."""

    model_config = ConfigDict(extra="ignore")

    status: str = ""
    source: str = ""
    campaign_id: str = ""
    in_pool: str = ""
    sort: str = ""
    cursor: str = ""

    def filters(self) -> dict[str, str]:
        return {k: v.strip() for k, v in self.model_dump(exclude={"cursor"}).items() if v.strip()}

    def upstream_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {**self.filters(), "limit": PAGE_SIZE}
        if self.cursor:
            params["next_cursor"] = self.cursor
        return params

    def next_query(self, cursor: str) -> str:
        return urlencode({**self.filters(), "cursor": cursor})


def split_list(text: str) -> list[str]:
    """Phones or emails typed one per line or separated by commas / semicolons."""
    return [part.strip() for part in re.split(r"[\n,;，；]+", text or "") if part.strip()]


def field_of(name: str) -> str:
    """``phones[1]`` → ``phones``: a list is one input on the form."""
    return name.split("[", 1)[0]


async def display_name(client: Api, user_id: str) -> str:
    """The directory's name for a user (its public card), or the id if it cannot say."""
    if not user_id:
        return ""
    try:
        card = await client.get("directory", f"/v1/users/{user_id}")
    except UpstreamProblem:
        return user_id
    return str(card.get("name") or user_id)


async def field_errors(client: Api, problem: UpstreamProblem) -> dict[str, str]:
    """Each refusal at its input; a duplicate says whose the lead or customer is, by name."""
    out: dict[str, str] = {}
    for error in problem.errors:
        name = field_of(str(error.get("field") or ""))
        if not name or name in out:
            continue
        params = error.get("params") or {}
        code = error.get("code")
        if code in ("duplicate-lead", "duplicate-customer"):
            owner = await display_name(client, str(params.get("owner_id") or ""))
            key = f"leads.dup.{'lead' if code == 'duplicate-lead' else 'customer'}.{'owned' if owner else 'pool'}"
            out[name] = client.console.catalogue.translate(client.session.language, key, owner=owner)
        else:
            out[name] = str(error.get("reason") or "")
    return out


async def campaign_names(client: Api) -> list[tuple[str, str]]:
    """Campaigns to pick from (the 100 newest), or none when the user may not see campaigns."""
    if not may(client.session.user, "campaigns:view"):
        return []
    try:
        page = await client.get("leads", "/v1/campaigns", params={"limit": 100})
    except UpstreamProblem:
        return []
    return [(str(c["id"]), str(c["name"])) for c in page.get("items") or []]


def _list_context(query: LeadQuery, pool: bool) -> dict[str, Any]:
    return {
        "query": query,
        "statuses": STATUSES,
        "sources": SOURCES,
        "pool": pool,
        "sorts": SORTS,
        "field_errors": {},
        "problem": None,
        "outcome": None,
    }


async def _list(request: Request, client: Api, query: LeadQuery, pool: bool, **extra: Any) -> HTMLResponse:
    context = _list_context(query, pool) | {"campaigns": await campaign_names(client)} | extra
    params = query.upstream_params()
    if pool:
        params["in_pool"] = "true"
    try:
        page = await client.get("leads", "/v1/leads", params=params)
    except UpstreamProblem as problem:
        if problem.status != 422:
            raise
        context |= {"items": [], "next_cursor": None, "field_errors": problem.field_errors(), "problem": problem}
        return render(request, "leads/list.html", context, status_code=422)
    context |= {"items": page["items"], "next_cursor": page.get("next_cursor")}
    return render(request, "leads/list.html", context)


@router.get("", include_in_schema=False)
async def leads_page(
    request: Request, client: Annotated[Api, Depends(api)], query: Annotated[LeadQuery, Depends()]
) -> HTMLResponse:
    return await _list(request, client, query, pool=False)


@router.get("/pool", include_in_schema=False)
async def pool_page(
    request: Request, client: Annotated[Api, Depends(api)], query: Annotated[LeadQuery, Depends()]
) -> HTMLResponse:
    return await _list(request, client, query, pool=True)


@router.post("/{lead_id}/claim", include_in_schema=False)
async def claim(request: Request, lead_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    try:
        await client.send("leads", "POST", f"/v1/leads/{lead_id}/claim")
    except UpstreamProblem as problem:
        if problem.status not in (404, 409, 422):
            raise
        key = "leads.pool.taken" if problem.status == 409 else "leads.pool.gone"
        outcome = {"lead_id": lead_id, "key": key, "detail": client.problem_text(problem)}
        page = await _list(request, client, LeadQuery(), pool=True, outcome=outcome)
        page.status_code = problem.status
        return page
    return RedirectResponse(f"/leads/{lead_id}?done=claimed", status_code=303)


# --- a new lead --------------------------------------------------------------------------------


def lead_payload(form: Any) -> Document:
    body: Document = {}
    for name in TEXT_FIELDS:
        value = str(form.get(name) or "").strip()
        if value:
            body[name] = value
    for name in LIST_FIELDS:
        body[name] = split_list(str(form.get(name) or ""))
    return body


def form_values(lead: Document) -> dict[str, str]:
    values = {name: str(lead.get(name) or "") for name in TEXT_FIELDS}
    values |= {name: "\n".join(lead.get(name) or []) for name in LIST_FIELDS}
    return values


@router.get("/new", include_in_schema=False)
async def new_lead_form(request: Request, client: Annotated[Api, Depends(api)]) -> HTMLResponse:
    context: dict[str, Any] = {
        "values": {},
        "field_errors": {},
        "problem": None,
        "campaigns": await campaign_names(client),
    }
    return render(request, "leads/new.html", context | {"sources": SOURCES})


@router.post("/new", include_in_schema=False)
async def create_lead(request: Request, client: Annotated[Api, Depends(api)]) -> Response:
    form = await request.form()
    body = lead_payload(form)
    if form.get("in_pool"):
        body["in_pool"] = True
    try:
        created = (await client.send("leads", "POST", "/v1/leads", json=body)).json()
    except UpstreamProblem as problem:
        if problem.status not in (409, 422):
            raise
        context = {
            "values": {k: str(v) for k, v in form.items()},
            "field_errors": await field_errors(client, problem),
            "problem": problem,
            "duplicate": problem.status == 409,
            "campaigns": await campaign_names(client),
            "sources": SOURCES,
        }
        return render(request, "leads/new.html", context, status_code=problem.status)
    return RedirectResponse(f"/leads/{created['id']}?done=created", status_code=303)


# --- one lead ------------------------------------------------------------------------------------


async def _detail(request: Request, client: Api, lead_id: str, status_code: int = 200, **extra: Any) -> HTMLResponse:
    lead = await client.get("leads", f"/v1/leads/{lead_id}")
    try:
        history = await client.get("leads", f"/v1/leads/{lead_id}/history")
    except UpstreamProblem:
        history = []
    campaigns = await campaign_names(client)
    campaign = dict(campaigns).get(lead["campaign_id"]) if lead.get("campaign_id") else None
    context: dict[str, Any] = {
        "lead": lead,
        "owner_name": await display_name(client, lead.get("owner_id") or ""),
        "campaign_name": campaign,
        "history": history,
        "moves": MOVES.get(lead["status"], ()),
        "values": form_values(lead),
        "field_errors": {},
        "problem": None,
        "form": None,
        "sources": SOURCES,
        "campaigns": campaigns,
        "done": request.query_params.get("done", ""),
        "score": await lead_score(client, lead_id),
        "score_percent": percent,
        "convert": {
            "contact_name": lead.get("contact_name") or "",
            "phones": "\n".join(lead.get("phones") or []),
            "emails": "\n".join(lead.get("emails") or []),
            "opportunity_name": lead.get("company_name") or "",
            "currency": "CNY",
        },
    }
    context |= extra
    return render(request, "leads/detail.html", context, status_code=status_code)


@router.get("/{lead_id}", include_in_schema=False)
async def lead_page(request: Request, lead_id: str, client: Annotated[Api, Depends(api)]) -> HTMLResponse:
    return await _detail(request, client, lead_id)


async def _act(
    request: Request,
    client: Api,
    lead_id: str,
    form_name: str,
    method: str,
    path: str,
    body: Document | None,
    done: str,
    if_match: str | None = None,
    keep: dict[str, Any] | None = None,
) -> Response:
    """One call on the lead; done: back to its page with a notice; refused: the page with the reason."""
    headers = {"If-Match": f'"{if_match}"'} if if_match else None
    try:
        await client.send("leads", method, path, json=body, headers=headers)
    except UpstreamProblem as problem:
        if problem.status not in (400, 404, 405, 409, 422):
            raise  # 412: the "someone changed this" page
        errors = await field_errors(client, problem)
        return await _detail(
            request,
            client,
            lead_id,
            problem.status,
            problem=problem,
            field_errors=errors,
            form=form_name,
            **(keep or {}),
        )
    return RedirectResponse(f"/leads/{lead_id}?done={done}", status_code=303)


@router.post("/{lead_id}/edit", include_in_schema=False)
async def edit_lead(request: Request, lead_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    form = await request.form()
    body = lead_payload(form)
    for name in TEXT_FIELDS:
        body.setdefault(name, None)  # an emptied field is cleared
    body["company_name"] = body["company_name"] or ""
    version = str(form.get("version") or "")
    keep = {"values": {k: str(v) for k, v in form.items()}}
    return await _act(request, client, lead_id, "edit", "PATCH", f"/v1/leads/{lead_id}", body, "saved", version, keep)


@router.post("/{lead_id}/status", include_in_schema=False)
async def move_lead(request: Request, lead_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    form = await request.form()
    body: Document = {"status": str(form.get("status") or "")}
    if str(form.get("reason") or "").strip():
        body["reason"] = str(form.get("reason")).strip()
    version = str(form.get("version") or "")
    return await _act(request, client, lead_id, "status", "PATCH", f"/v1/leads/{lead_id}", body, "moved", version)


@router.post("/{lead_id}/release", include_in_schema=False)
async def release_lead(request: Request, lead_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    form = await request.form()
    body = {"reason": str(form.get("reason") or "").strip()}
    return await _act(request, client, lead_id, "release", "POST", f"/v1/leads/{lead_id}/release", body, "released")


@router.post("/{lead_id}/assign", include_in_schema=False)
async def assign_lead(request: Request, lead_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    form = await request.form()
    body = {"owner_id": str(form.get("owner_id") or "").strip()}
    return await _act(request, client, lead_id, "assign", "POST", f"/v1/leads/{lead_id}/assign", body, "assigned")


def conversion_body(form: Any) -> Document:
    """The conversion request as the API describes it: an optional existing customer, the contact
    (prefilled from the lead) and an optional opportunity."""
    body: Document = {}
    customer_id = str(form.get("customer_id") or "").strip()
    if customer_id:
        body["customer_id"] = customer_id
    contact: Document = {
        "name": str(form.get("contact_name") or "").strip(),
        "phones": split_list(str(form.get("phones") or "")),
        "emails": split_list(str(form.get("emails") or "")),
    }
    if str(form.get("title") or "").strip():
        contact["title"] = str(form.get("title")).strip()
    body["contact"] = contact
    if form.get("with_opportunity"):
        opportunity: Document = {"name": str(form.get("opportunity_name") or "").strip()}
        amount = str(form.get("amount") or "").strip()
        if amount:
            opportunity["amount"] = amount
            opportunity["currency"] = str(form.get("currency") or "CNY").strip()
        close = str(form.get("expected_close_date") or "").strip()
        if close:
            opportunity["expected_close_date"] = close
        body["opportunity"] = opportunity
    return body


@router.post("/{lead_id}/convert", include_in_schema=False)
async def convert_lead(request: Request, lead_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    form = await request.form()
    keep = {"convert": {k: str(v) for k, v in form.items()}}
    path = f"/v1/leads/{lead_id}/convert"
    version = str(form.get("version") or "")
    body = conversion_body(form)
    return await _act(request, client, lead_id, "convert", "POST", path, body, "converting", version, keep)
