"""Campaign pages over the leads service's public API (``/v1/campaigns``).

* ``/campaigns``: the list (status, channel), paged with ``next_cursor``; a New button for
  ``campaigns:manage``.
* ``/campaigns/new``: plan one (budget as a decimal string and a currency, the period, the channel).
* ``/campaigns/{id}``: the campaign, its edit form (If-Match, status included), its cost entries
  with the running total and a form to add one, and its segment editor (tags all / any and the
  customers list's filters) with a link to the customers list showing the segment
  (``GET /v1/campaigns/{id}/segment``'s ``customers_query``).
"""

from __future__ import annotations

import itertools
import re
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict

from crm_console.pages.campaigns.insights import campaign_figures, rate, web_form_status
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, render

router = APIRouter(prefix="/campaigns")

PAGE_SIZE = 20
CHANNELS = ("exhibition", "online_ads", "content", "referral", "outbound_list", "event", "other")
STATUSES = ("planned", "active", "completed", "cancelled")
MOVES = {"planned": ("active", "cancelled"), "active": ("completed", "cancelled"), "completed": (), "cancelled": ()}
SEGMENT_CHOICES = {
    "kind": ("company", "person"),
    "size": ("1-20", "21-100", "101-500", "501-1000", "1000+"),
    "source": (
        "website",
        "inbound_call",
        "cold_call",
        "referral",
        "campaign",
        "exhibition",
        "social",
        "partner",
        "advertising",
        "lead_conversion",
        "other",
    ),
    "tier": ("A", "B", "C"),
    "lifecycle_stage": ("lead", "prospect", "customer", "repeat_customer", "dormant", "churned"),
}
SEGMENT_TEXTS = ("industry", "province", "city", "owner_id", "department_id")
Document = dict[str, Any]


class CampaignQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: str = ""
    channel: str = ""
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


def field_of(name: str) -> str:
    """``segment.tags_all[1]`` → ``segment.tags_all``: a list is one input on the form."""
    return name.split("[", 1)[0]


def field_errors(problem: UpstreamProblem) -> dict[str, str]:
    out: dict[str, str] = {}
    for error in problem.errors:
        name = field_of(str(error.get("field") or ""))
        if name and name not in out:
            out[name] = str(error.get("reason") or "")
    return out


def tags(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"[,，;；\n]+", text or "") if part.strip()]


def running_totals(costs: list[Document]) -> list[tuple[Document, str]]:
    """Each cost entry by day with the total up to it (amounts are decimal strings)."""
    ordered = sorted(costs, key=lambda c: (str(c.get("date")), str(c.get("recorded_at"))))
    amounts = [Decimal(str(c["amount"]["amount"])) for c in ordered]
    return [(c, f"{total:.2f}") for c, total in zip(ordered, itertools.accumulate(amounts), strict=True)]


def campaign_body(form: Any) -> Document:
    body: Document = {
        "name": str(form.get("name") or "").strip(),
        "channel": str(form.get("channel") or ""),
        "budget": {
            "amount": str(form.get("budget.amount") or "").strip(),
            "currency": str(form.get("budget.currency") or "").strip().upper(),
        },
        "start_date": str(form.get("start_date") or "") or None,
        "end_date": str(form.get("end_date") or "") or None,
    }
    return body


def segment_body(form: Any) -> Document | None:
    """The segment as the API takes it; None (no segment) when nothing is given."""
    segment: Document = {
        "tags_all": tags(str(form.get("segment.tags_all") or "")),
        "tags_any": tags(str(form.get("segment.tags_any") or "")),
    }
    for name in (*SEGMENT_CHOICES, *SEGMENT_TEXTS):
        value = str(form.get(f"segment.{name}") or "").strip()
        if value:
            segment[name] = value
    if not segment["tags_all"] and not segment["tags_any"] and len(segment) == 2:
        return None
    return segment


def segment_values(segment: Document | None) -> dict[str, str]:
    segment = segment or {}
    values = {f"segment.{k}": str(v) for k, v in segment.items() if v and not isinstance(v, list)}
    values["segment.tags_all"] = ", ".join(segment.get("tags_all") or [])
    values["segment.tags_any"] = ", ".join(segment.get("tags_any") or [])
    return values


def campaign_values(campaign: Document) -> dict[str, str]:
    return {
        "name": campaign["name"],
        "channel": campaign["channel"],
        "budget.amount": campaign["budget"]["amount"],
        "budget.currency": campaign["budget"]["currency"],
        "start_date": campaign["start_date"],
        "end_date": campaign["end_date"],
        "status": campaign["status"],
    }


def _base() -> dict[str, Any]:
    return {
        "channels": CHANNELS,
        "statuses": STATUSES,
        "segment_choices": SEGMENT_CHOICES,
        "segment_texts": SEGMENT_TEXTS,
        "field_errors": {},
        "problem": None,
        "form": None,
    }


@router.get("", include_in_schema=False)
async def campaigns_page(
    request: Request, client: Annotated[Api, Depends(api)], query: Annotated[CampaignQuery, Depends()]
) -> HTMLResponse:
    context = _base() | {"query": query}
    try:
        page = await client.get("leads", "/v1/campaigns", params=query.upstream_params())
    except UpstreamProblem as problem:
        if problem.status != 422:
            raise
        context |= {"items": [], "next_cursor": None, "field_errors": field_errors(problem), "problem": problem}
        return render(request, "campaigns/list.html", context, status_code=422)
    context |= {"items": page["items"], "next_cursor": page.get("next_cursor")}
    return render(request, "campaigns/list.html", context)


@router.get("/new", include_in_schema=False)
async def new_campaign_form(request: Request, _client: Annotated[Api, Depends(api)]) -> HTMLResponse:
    values = {"budget.currency": "CNY", "channel": "exhibition"}
    return render(request, "campaigns/new.html", _base() | {"values": values})


@router.post("/new", include_in_schema=False)
async def plan_campaign(request: Request, client: Annotated[Api, Depends(api)]) -> Response:
    form = await request.form()
    try:
        created = (await client.send("leads", "POST", "/v1/campaigns", json=campaign_body(form))).json()
    except UpstreamProblem as problem:
        if problem.status not in (409, 422):
            raise
        context = _base() | {
            "values": {k: str(v) for k, v in form.items()},
            "field_errors": field_errors(problem),
            "problem": problem,
        }
        return render(request, "campaigns/new.html", context, status_code=problem.status)
    return RedirectResponse(f"/campaigns/{created['id']}?done=created", status_code=303)


async def _detail(
    request: Request, client: Api, campaign_id: str, status_code: int = 200, **extra: Any
) -> HTMLResponse:
    campaign = await client.get("leads", f"/v1/campaigns/{campaign_id}")
    try:
        segment = await client.get("leads", f"/v1/campaigns/{campaign_id}/segment")
    except UpstreamProblem:
        segment = {"segment": campaign.get("segment"), "customers_query": None}
    try:
        history = await client.get("leads", f"/v1/campaigns/{campaign_id}/history")
    except UpstreamProblem:
        history = []
    context = _base() | {
        "campaign": campaign,
        "costs": running_totals(campaign.get("costs") or []),
        "customers_query": segment.get("customers_query"),
        "moves": MOVES.get(campaign["status"], ()),
        "values": campaign_values(campaign) | segment_values(segment.get("segment")),
        "cost_values": {},
        "history": history,
        "done": request.query_params.get("done", ""),
        "figures": await campaign_figures(client, campaign_id),
        "web_form": await web_form_status(client, campaign_id),
        "web_form_new": None,
        "rate": rate,
    }
    context |= extra
    return render(request, "campaigns/detail.html", context, status_code=status_code)


@router.get("/{campaign_id}", include_in_schema=False)
async def campaign_page(request: Request, campaign_id: str, client: Annotated[Api, Depends(api)]) -> HTMLResponse:
    return await _detail(request, client, campaign_id)


async def _change(
    request: Request, client: Api, campaign_id: str, form_name: str, body: Document, version: str, done: str, keep: Any
) -> Response:
    try:
        await client.send(
            "leads", "PATCH", f"/v1/campaigns/{campaign_id}", json=body, headers={"If-Match": f'"{version}"'}
        )
    except UpstreamProblem as problem:
        if problem.status not in (409, 422):
            raise  # 412: the "someone changed this" page
        return await _detail(
            request,
            client,
            campaign_id,
            problem.status,
            problem=problem,
            field_errors=field_errors(problem),
            form=form_name,
            **keep,
        )
    return RedirectResponse(f"/campaigns/{campaign_id}?done={done}", status_code=303)


@router.post("/{campaign_id}/edit", include_in_schema=False)
async def edit_campaign(request: Request, campaign_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    form = await request.form()
    body = campaign_body(form)
    status = str(form.get("status") or "")
    if status:
        body["status"] = status
    keep = {"edit_values": {k: str(v) for k, v in form.items()}}
    return await _change(request, client, campaign_id, "edit", body, str(form.get("version")), "saved", keep)


@router.post("/{campaign_id}/segment", include_in_schema=False)
async def edit_segment(request: Request, campaign_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    form = await request.form()
    body = {"segment": segment_body(form)}
    keep = {"segment_values": {k: str(v) for k, v in form.items()}}
    return await _change(request, client, campaign_id, "segment", body, str(form.get("version")), "segment", keep)


@router.post("/{campaign_id}/costs", include_in_schema=False)
async def add_cost(request: Request, campaign_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    form = await request.form()
    body: Document = {"amount": str(form.get("amount") or "").strip(), "date": str(form.get("date") or "") or None}
    if str(form.get("note") or "").strip():
        body["note"] = str(form.get("note")).strip()
    try:
        await client.send("leads", "POST", f"/v1/campaigns/{campaign_id}/costs", json=body)
    except UpstreamProblem as problem:
        if problem.status not in (409, 422):
            raise
        keep = {"cost_values": {k: str(v) for k, v in form.items()}}
        return await _detail(
            request,
            client,
            campaign_id,
            problem.status,
            problem=problem,
            field_errors=field_errors(problem),
            form="cost",
            **keep,
        )
    return RedirectResponse(f"/campaigns/{campaign_id}?done=cost", status_code=303)
