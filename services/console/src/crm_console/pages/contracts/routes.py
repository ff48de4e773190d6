"""Contracts (合同) over the sales service's ``/v1/contracts``.

* ``/contracts``: the contracts the person sees (status, customer and owner filters, oldest or
  newest first, keyset pages over ``next_cursor``).
* ``/contracts/new?opportunity_id=|quotation_id=|customer_id=``: a draft (title, the source, amount
  and currency when drafted for a customer, signatory, dates, document, notes); each refusal at its input.
* ``/contracts/{id}``: the header, the approval levels and who decided, the moves the person may
  make (forms sending ``If-Match``), the payment plan editor (``PUT .../plan``), payments, refunds,
  what was received / is outstanding / is credit per contract and per instalment, and invoices.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_console.lists import list_page, require
from crm_console.pages.customers.people import owner_names, people_filter
from crm_console.registry import may
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, render

router = APIRouter(prefix="/contracts")
Client = Annotated[Api, Depends(api)]
PAGE_SIZE = 50
STATUSES = ("draft", "under_approval", "signed", "executing", "completed", "terminated")
FILTERS = ("status", "customer_id", "owner_id", "sort")
SORTS = ("-created_at", "created_at")
METHODS = ("bank_transfer", "cash", "cheque", "online", "other")
DRAFT_FIELDS = (
    "title",
    "opportunity_id",
    "quotation_id",
    "customer_id",
    "amount",
    "currency",
    "customer_signatory",
    "start_date",
    "end_date",
    "signed_document",
    "notes",
)
#: The moves from each status shown (the API refuses any other with 409) and the permission each needs.
MOVES: dict[str, tuple[str, ...]] = {
    "draft": ("submit",),
    "under_approval": ("approve", "reject", "sign"),
    "signed": ("start", "terminate"),
    "executing": ("complete", "terminate"),
}
ACTIONS = ("submit", "approve", "reject", "sign", "start", "complete", "terminate")
PLAN_FIELDS = ("due_date", "amount", "note", "id")
PLANNABLE = ("draft", "under_approval", "signed", "executing")
PAYABLE = ("signed", "executing", "completed")
BLANK_ROWS = 2
_ROW = re.compile(r"^instalments\[(\d+)\]\.?(.*)$")


def pending_level(contract: dict[str, Any]) -> dict[str, Any] | None:
    approval = contract.get("approval") or {}
    for level in approval.get("levels") or []:
        if not level.get("approved_by"):
            return dict(level)
    return None


def moves_for(contract: dict[str, Any], user: Any) -> list[str]:
    """The moves shown: those the status allows and the person's permissions grant; approve and
    reject while a level waits (by its permission, never one's own contract), sign once none does."""
    shown = []
    level = pending_level(contract)
    for move in MOVES.get(str(contract.get("status")), ()):
        if move in ("approve", "reject"):
            if level is None or not may(user, str(level.get("permission") or "contracts:approve")):
                continue
            if getattr(user, "id", None) == contract.get("owner_id"):
                continue
        elif move == "sign" and level is not None:
            continue
        if move not in ("approve", "reject") and not may(user, "contracts:manage"):
            continue
        shown.append(move)
    return shown


def plan_rows(form: Any, extra: int = 0) -> list[dict[str, str]]:
    """Every instalment row the form posted (``instalments[i].due_date`` …), in order."""
    indexes = sorted({int(m.group(1)) for key in form.keys() if (m := _ROW.match(str(key))) is not None})
    rows = [{name: str(form.get(f"instalments[{i}].{name}") or "").strip() for name in PLAN_FIELDS} for i in indexes]
    return rows + [dict.fromkeys(PLAN_FIELDS, "") for _ in range(extra)]


def stored_rows(contract: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {
            "due_date": str(i.get("due_date") or ""),
            "amount": str(i.get("amount") or ""),
            "note": str(i.get("note") or ""),
            "id": str(i.get("id") or ""),
        }
        for i in contract.get("plan") or []
    ]


def plan_errors(problem: UpstreamProblem, rows: list[int]) -> dict[str, str]:
    """The service's ``instalments[i].<field>`` of the i-th sent row at the form's row."""
    out: dict[str, str] = {}
    for name, reason in problem.field_errors().items():
        match = _ROW.match(name)
        if match is not None:
            index, rest = int(match.group(1)), match.group(2) or "amount"
            row = rows[index] if index < len(rows) else index
            out.setdefault(f"instalments[{row}].{rest}", reason)
        else:
            out.setdefault(name, reason)
    return out


def people_of(contract: dict[str, Any], invoices: list[dict[str, Any]]) -> list[str | None]:
    """Everyone the contract's page names: owner, creator, submitter and approvers, who rejected or
    terminated it, who recorded each payment and refund, who issued each invoice."""
    approval = contract.get("approval") or {}
    people = [contract.get("owner_id"), contract.get("created_by"), approval.get("submitted_by")]
    people += [level.get("approved_by") for level in approval.get("levels") or []]
    people += [(contract.get(name) or {}).get("by") for name in ("rejection", "termination")]
    people += [item.get("by") for name in ("payments", "refunds") for item in contract.get(name) or []]
    return people + [invoice.get("issued_by") for invoice in invoices]


@router.get("", include_in_schema=False)
async def contracts(request: Request, client: Client) -> HTMLResponse:
    page = await list_page(request, client, "sales", "/v1/contracts", FILTERS, PAGE_SIZE)
    context = page.context() | {
        "who": await owner_names(client, (c.get("owner_id") for c in page.items)),
        "owners": await people_filter(client, page.filters.get("owner_id")),
        "statuses": STATUSES,
        "sorts": SORTS,
    }
    return render(request, "contracts/list.html", context)


def _new_form(
    request: Request,
    values: dict[str, str],
    errors: dict[str, str] | None = None,
    refused: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    context = {"values": values, "field_errors": errors or {}, "refused": refused}
    return render(request, "contracts/new.html", context, status_code=status_code)


@router.get("/new", include_in_schema=False)
async def new_contract(
    request: Request, client: Client, customer_id: str = "", opportunity_id: str = "", quotation_id: str = ""
) -> HTMLResponse:
    require(client, "contracts:manage")
    values = dict.fromkeys(DRAFT_FIELDS, "") | {
        "opportunity_id": opportunity_id,
        "quotation_id": quotation_id,
        "customer_id": "" if opportunity_id or quotation_id else customer_id,
        "currency": "" if opportunity_id or quotation_id else "CNY",
    }
    return _new_form(request, values)


@router.post("/new", include_in_schema=False)
async def create_contract(request: Request, client: Client) -> Response:
    require(client, "contracts:manage")
    form = await request.form()
    values = {name: str(form.get(name) or "").strip() for name in DRAFT_FIELDS}
    body = {name: value for name, value in values.items() if value}
    try:
        answer = await client.send("sales", "POST", "/v1/contracts", json=body)
    except UpstreamProblem as problem:
        if problem.status not in (403, 409, 422):
            raise
        return _new_form(
            request, values, problem.field_errors(), client.problem_text(problem), status_code=problem.status
        )
    return RedirectResponse(f"/contracts/{answer.json()['id']}?done=created", status_code=303)


async def _page(
    request: Request,
    client: Api,
    contract_id: str,
    *,
    done: str = "",
    errors: dict[str, str] | None = None,
    refused: str = "",
    rows: list[dict[str, str]] | None = None,
    posted: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    answer = await client.send("sales", "GET", f"/v1/contracts/{contract_id}")
    contract = answer.json() | {"etag": answer.headers.get("ETag", "")}
    invoices = await client.get("sales", f"/v1/contracts/{contract_id}/invoices")
    status = str(contract.get("status"))
    manage = may(client.session.user, "contracts:manage")
    context = {
        "c": contract,
        "invoices": invoices.get("items") or [],
        "moves": moves_for(contract, client.session.user),
        "level": pending_level(contract),
        "plan_rows": rows if rows is not None else stored_rows(contract) + plan_rows({}, BLANK_ROWS),
        "can_plan": manage and status in PLANNABLE,
        "can_pay": manage and status in PAYABLE and bool(contract.get("plan")),
        "needs_plan": manage and status in PAYABLE and not contract.get("plan"),
        "can_edit": manage and status == "draft",
        "who": await owner_names(client, people_of(contract, invoices.get("items") or [])),
        "manage": manage,
        "methods": METHODS,
        "today": date.today().isoformat(),
        "posted": posted or {},
        "done": done,
        "field_errors": errors or {},
        "refused": refused,
        "edit_refused": False,
        "edit_stale": False,
        **(extra or {}),
    }
    return render(request, "contracts/detail.html", context, status_code=status_code)


@router.get("/{contract_id}", include_in_schema=False)
async def contract(request: Request, contract_id: str, client: Client, done: str = "") -> HTMLResponse:
    return await _page(request, client, contract_id, done=done)


async def _refused(
    request: Request,
    client: Api,
    contract_id: str,
    problem: UpstreamProblem,
    errors: dict[str, str],
    **kwargs: Any,
) -> HTMLResponse:
    if problem.status not in (403, 409, 422):
        raise problem
    return await _page(
        request,
        client,
        contract_id,
        errors=errors,
        refused=client.problem_text(problem),
        status_code=problem.status,
        **kwargs,
    )


@router.post("/{contract_id}/plan", include_in_schema=False)
async def set_plan(request: Request, contract_id: str, client: Client) -> Response:
    """The whole plan (``PUT /v1/contracts/{id}/plan`` with the page's ``If-Match``); blank rows are
    left out; a refusal at its row (the "sums to the amount" one at ``instalments``)."""
    form = await request.form()
    rows = plan_rows(form)
    sent: list[int] = []
    instalments = []
    for index, row in enumerate(rows):
        if not (row["due_date"] or row["amount"] or row["note"]):
            continue
        item = {"due_date": row["due_date"], "amount": row["amount"]}
        if row["note"]:
            item["note"] = row["note"]
        if row["id"]:
            item["id"] = row["id"]
        instalments.append(item)
        sent.append(index)
    headers = {"If-Match": str(form.get("etag") or "")}
    try:
        await client.send(
            "sales", "PUT", f"/v1/contracts/{contract_id}/plan", json={"instalments": instalments}, headers=headers
        )
    except UpstreamProblem as problem:
        return await _refused(request, client, contract_id, problem, plan_errors(problem, sent), rows=rows)
    return RedirectResponse(f"/contracts/{contract_id}?done=plan_set", status_code=303)


async def _post_part(
    request: Request, client: Api, contract_id: str, part: str, fields: tuple[str, ...], done: str
) -> Response:
    """A payment, a refund or an invoice from its form (inputs ``<part>.<field>``); the service's
    field errors at those inputs."""
    form = await request.form()
    posted = {f"{part}.{name}": str(form.get(f"{part}.{name}") or "").strip() for name in fields}
    body = {name: posted[f"{part}.{name}"] for name in fields if posted[f"{part}.{name}"]}
    path = {"payment": "payments", "refund": "refunds", "invoice": "invoices"}[part]
    try:
        await client.send("sales", "POST", f"/v1/contracts/{contract_id}/{path}", json=body)
    except UpstreamProblem as problem:
        errors = {f"{part}.{name}": reason for name, reason in problem.field_errors().items()}
        if problem.extensions.get("reason") == "plan-required":  # shown where the payment form would be
            errors[part] = client.problem_text(problem)
        return await _refused(request, client, contract_id, problem, errors, posted=posted)
    return RedirectResponse(f"/contracts/{contract_id}?done={done}", status_code=303)


@router.post("/{contract_id}/payments", include_in_schema=False)
async def record_payment(request: Request, contract_id: str, client: Client) -> Response:
    fields = ("amount", "received_on", "method", "reference", "instalment_id")
    return await _post_part(request, client, contract_id, "payment", fields, "payment")


@router.post("/{contract_id}/refunds", include_in_schema=False)
async def record_refund(request: Request, contract_id: str, client: Client) -> Response:
    return await _post_part(request, client, contract_id, "refund", ("payment_id", "amount", "reason"), "refund")


@router.post("/{contract_id}/invoices", include_in_schema=False)
async def issue_invoice(request: Request, contract_id: str, client: Client) -> Response:
    fields = ("payment_id", "tax_rate", "title", "buyer_tax_id")
    return await _post_part(request, client, contract_id, "invoice", fields, "invoice")


@router.post("/{contract_id}/{action}", include_in_schema=False)
async def move(request: Request, contract_id: str, action: str, client: Client) -> Response:
    """One move with the page's ``If-Match``; a refusal (409 wrong status, 422 at the comment,
    the reason or the signing day, 403 approving one's own) is shown on the contract's page."""
    if action not in ACTIONS:
        return Response(status_code=404)
    form = await request.form()
    fields = {"sign": ("signed_on", "signed_document", "comment"), "terminate": ("reason",)}.get(action, ("comment",))
    body = {name: str(form.get(f"{action}.{name}") or "").strip() for name in fields}
    body = {name: value for name, value in body.items() if value}
    if action == "terminate":
        body.setdefault("reason", "")
    if action == "sign":
        body.setdefault("signed_on", "")
    headers = {"If-Match": str(form["etag"])} if form.get("etag") else None
    try:
        await client.send("sales", "POST", f"/v1/contracts/{contract_id}/{action}", json=body or None, headers=headers)
    except UpstreamProblem as problem:
        errors = {f"{action}.{name}": reason for name, reason in problem.field_errors().items()}
        return await _refused(request, client, contract_id, problem, errors)
    return RedirectResponse(f"/contracts/{contract_id}?done={action}", status_code=303)
