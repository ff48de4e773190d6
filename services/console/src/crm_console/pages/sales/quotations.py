"""Quotations (报价单) over the sales service's ``/v1/quotations``.

* ``/quotations``: the quotations the person sees (``GET /v1/quotations``: customer, opportunity,
  status and owner filters, keyset pages over ``next_cursor``).
* ``/quotations/new?customer_id=&opportunity_id=``: a draft: currency, tier, validity, notes and
  lines (a product by its SKU from the catalogue, quantity, discount; the unit price comes from the
  price lists unless typed). Each refusal at its input (the API's ``lines[i].quantity`` at the
  form's row).
* ``/quotations/{id}``: header (number, revision, status as shown: ``expired`` too), lines and
  totals, the moves the person may make (submit, approve / reject with a comment, send, accept /
  decline, revise) as forms sending ``If-Match``, every revision, and the PDF in zh-CN and en
  (``/quotations/{id}.pdf?lang=``, passed through from the service).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_console.lists import list_page, require
from crm_console.pages.sales.common import BLANK_ROWS, catalogue, form_errors, line_rows, posted_lines
from crm_console.registry import may
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, render

quotations_router = APIRouter(prefix="/quotations")
Client = Annotated[Api, Depends(api)]
PAGE_SIZE = 50
STATUSES = ("draft", "pending_approval", "approved", "rejected", "sent", "accepted", "declined", "expired")
FILTERS = ("customer_id", "opportunity_id", "status", "owner_id")
HEADER_FIELDS = ("customer_id", "opportunity_id", "currency", "tier", "valid_until", "notes")
#: The moves from each status shown (the API refuses any other with 409) and the permission each needs.
MOVES: dict[str, tuple[str, ...]] = {
    "draft": ("submit", "send"),
    "pending_approval": ("approve", "reject"),
    "approved": ("send",),
    "rejected": ("revise",),
    "sent": ("accept", "decline", "revise"),
    "declined": ("revise",),
    "expired": ("revise",),
}
NEEDS = {"approve": "quotations:approve", "reject": "quotations:approve"}
ACTIONS = ("submit", "approve", "reject", "send", "accept", "decline", "revise")


def moves_for(quotation: dict[str, Any], user: Any) -> list[str]:
    """The moves shown on the page: those the status allows and the person's permissions grant;
    from a draft, submit only when a discount needs approval, send only when none does."""
    shown = []
    for move in MOVES.get(str(quotation.get("status")), ()):
        if not may(user, NEEDS.get(move, "quotations:manage")):
            continue
        if quotation.get("status") == "draft" and move == ("send" if quotation.get("needs_approval") else "submit"):
            continue
        shown.append(move)
    return shown


@quotations_router.get("", include_in_schema=False)
async def quotations(request: Request, client: Client) -> HTMLResponse:
    page = await list_page(request, client, "sales", "/v1/quotations", FILTERS, PAGE_SIZE)
    return render(request, "sales/quotations.html", page.context() | {"statuses": STATUSES})


async def _new_form(
    request: Request,
    client: Api,
    values: dict[str, str],
    rows: list[dict[str, str]],
    errors: dict[str, str] | None = None,
    refused: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    context = {
        "values": values,
        "rows": rows,
        "products": await catalogue(client),
        "field_errors": errors or {},
        "refused": refused,
    }
    return render(request, "sales/quotation_new.html", context, status_code=status_code)


@quotations_router.get("/new", include_in_schema=False)
async def new_quotation(
    request: Request, client: Client, customer_id: str = "", opportunity_id: str = ""
) -> HTMLResponse:
    require(client, "quotations:manage")
    values = dict.fromkeys(HEADER_FIELDS, "") | {
        "customer_id": customer_id,
        "opportunity_id": opportunity_id,
        "currency": "CNY",
        "valid_until": (date.today() + timedelta(days=30)).isoformat(),
    }
    if opportunity_id and not customer_id:
        opportunity = await client.get("pipeline", f"/v1/opportunities/{opportunity_id}")
        values["customer_id"] = str(opportunity.get("customer_id") or "")
        values["currency"] = str(opportunity.get("currency") or "CNY")
    return await _new_form(request, client, values, line_rows({}, BLANK_ROWS + 2))


@quotations_router.post("/new", include_in_schema=False)
async def create_quotation(request: Request, client: Client) -> Response:
    form = await request.form()
    values = {name: str(form.get(name) or "").strip() for name in HEADER_FIELDS}
    rows = line_rows(form)
    unknown = client.console.catalogue.translate(client.session.language, "sales.unknown_sku")
    lines = await posted_lines(client, rows, unknown)
    if lines.errors:
        return await _new_form(request, client, values, rows, lines.errors, status_code=422)
    body: dict[str, Any] = {name: value for name, value in values.items() if value}
    body["lines"] = lines.body
    try:
        answer = await client.send("sales", "POST", "/v1/quotations", json=body)
    except UpstreamProblem as problem:
        if problem.status not in (409, 422):
            raise
        errors = form_errors(problem, lines.rows)
        return await _new_form(
            request, client, values, rows, errors, client.problem_text(problem), status_code=problem.status
        )
    return RedirectResponse(f"/quotations/{answer.json()['id']}?done=created", status_code=303)


@quotations_router.get("/{quotation_id}.pdf", include_in_schema=False)
async def quotation_pdf(quotation_id: str, client: Client, lang: str = "zh-CN") -> Response:
    language = lang if lang in ("zh-CN", "en") else "zh-CN"
    answer = await client.send("sales", "GET", f"/v1/quotations/{quotation_id}.pdf", params={"lang": language})
    disposition = answer.headers.get("Content-Disposition", "inline")
    return Response(answer.content, media_type="application/pdf", headers={"Content-Disposition": disposition})


async def _quotation_page(
    request: Request,
    client: Api,
    quotation_id: str,
    *,
    done: str = "",
    errors: dict[str, str] | None = None,
    refused: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    answer = await client.send("sales", "GET", f"/v1/quotations/{quotation_id}")
    quotation = answer.json() | {"etag": answer.headers.get("ETag", "")}
    versions = await client.get("sales", f"/v1/quotations/{quotation_id}/versions")
    context = {
        "q": quotation,
        "versions": versions.get("items") or [],
        "moves": moves_for(quotation, client.session.user),
        "done": done,
        "field_errors": errors or {},
        "refused": refused,
    }
    return render(request, "sales/quotation.html", context, status_code=status_code)


@quotations_router.get("/{quotation_id}", include_in_schema=False)
async def quotation(request: Request, quotation_id: str, client: Client, done: str = "") -> HTMLResponse:
    return await _quotation_page(request, client, quotation_id, done=done)


@quotations_router.post("/{quotation_id}/{action}", include_in_schema=False)
async def move(request: Request, quotation_id: str, action: str, client: Client) -> Response:
    """One move with the page's ``If-Match``; a refusal (409 wrong status or expired, 422 at the
    comment or the new validity, 403 approving one's own) is shown on the quotation's page."""
    if action not in ACTIONS:
        return Response(status_code=404)
    form = await request.form()
    comment = str(form.get(f"{action}.comment") or "").strip()
    body: dict[str, Any] = {}
    if action == "revise":
        valid_until = str(form.get(f"{action}.valid_until") or "").strip()
        if valid_until:
            body["valid_until"] = valid_until
    elif comment:
        body["comment"] = comment
    headers = {"If-Match": str(form["etag"])} if form.get("etag") else None
    try:
        await client.send(
            "sales", "POST", f"/v1/quotations/{quotation_id}/{action}", json=body or None, headers=headers
        )
    except UpstreamProblem as problem:
        if problem.status not in (403, 409, 422):
            raise
        errors = {f"{action}.{name}": reason for name, reason in problem.field_errors().items()}
        return await _quotation_page(
            request,
            client,
            quotation_id,
            errors=errors,
            refused=client.problem_text(problem),
            status_code=problem.status,
        )
    return RedirectResponse(f"/quotations/{quotation_id}?done={action}", status_code=303)
