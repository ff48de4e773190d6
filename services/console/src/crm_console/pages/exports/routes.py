"""Export requests over the customers service's ``/v1/customers/export-requests``.

A customers export above the organisation's threshold answers 202 (the customers page's export
button then lands here, ``?held=<id>``, saying it awaits approval). The requester sees their
requests and downloads an approved one (the console passes the service's CSV on); an approver
(``customers:export_approve``) sees the pending requests they may answer and approves or rejects
each with a comment.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_console.registry import may
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, render
from crm_platform.permissions import Permission

router = APIRouter(prefix="/export-requests")


def _approver(client: Api) -> bool:
    roles = client.session.user.roles if client.session.user else []
    return may(roles, Permission.customers_export_approve)


async def _pending(client: Api) -> list[dict[str, Any]]:
    if not _approver(client):
        return []
    items: list[dict[str, Any]] = (await client.get("customers", "/v1/customers/export-requests/pending"))["items"]
    return items


def _is_mine(client: Api, doc: dict[str, Any]) -> bool:
    return client.session.user is not None and doc["requester_id"] == client.session.user.id


def _filter_text(request_doc: dict[str, Any]) -> str:
    shown = {**(request_doc.get("filter") or {}), **({"sort": request_doc["sort"]} if request_doc.get("sort") else {})}
    return ", ".join(f"{k}={v}" for k, v in shown.items()) or "—"


@router.get("", include_in_schema=False)
async def requests_page(request: Request, client: Annotated[Api, Depends(api)], held: str = "") -> HTMLResponse:
    mine = (await client.get("customers", "/v1/customers/export-requests"))["items"]
    context = {
        "mine": mine,
        "pending": await _pending(client),
        "approver": _approver(client),
        "policy_admin": _policy_admin(client),
        "held": held,
        "filter_text": _filter_text,
        "problem": None,
    }
    return render(request, "exports/page.html", context)


def _policy_admin(client: Api) -> bool:
    roles = client.session.user.roles if client.session.user else []
    return may(roles, Permission.customers_export_policy)


async def _policy_page(
    request: Request, client: Api, value: str = "", problem: UpstreamProblem | None = None, saved: bool = False
) -> HTMLResponse:
    if not _policy_admin(client):
        raise UpstreamProblem("console", 403, "Forbidden", "")
    policy = await client.get("customers", "/v1/customers/export-policy")
    current = policy.get("approval_above_rows")
    context = {
        "policy": policy,
        "value": value if problem else ("" if current is None else str(current)),
        "field_errors": problem.field_errors() if problem else {},
        "problem": client.problem_text(problem) if problem else None,
        "saved": saved,
    }
    return render(request, "exports/policy.html", context, status_code=problem.status if problem else 200)


@router.get("/policy", include_in_schema=False)
async def policy_page(request: Request, client: Annotated[Api, Depends(api)], saved: bool = False) -> HTMLResponse:
    """The organisation's threshold (administrators): above how many rows an export needs approval."""
    return await _policy_page(request, client, saved=saved)


@router.post("/policy", include_in_schema=False)
async def save_policy(
    request: Request, client: Annotated[Api, Depends(api)], approval_above_rows: Annotated[str, Form()] = ""
) -> Response:
    """An empty field turns approval off; anything else goes to the service as it was typed, so its
    422 (not a number, negative) is shown at the field."""
    text = approval_above_rows.strip()
    value: Any = None
    if text:
        value = int(text) if text.lstrip("-").isdigit() else text
    try:
        await client.send("customers", "PUT", "/v1/customers/export-policy", json={"approval_above_rows": value})
    except UpstreamProblem as problem:
        if problem.status != 422:
            raise
        return await _policy_page(request, client, approval_above_rows, problem)
    return RedirectResponse("/export-requests/policy?saved=true", status_code=303)


@router.get("/{request_id}", include_in_schema=False)
async def request_page(request: Request, request_id: str, client: Annotated[Api, Depends(api)]) -> HTMLResponse:
    doc = await client.get("customers", f"/v1/customers/export-requests/{request_id}")
    context = {
        "r": doc,
        "mine": _is_mine(client, doc),
        "approver": _approver(client),
        "filter_text": _filter_text,
        "problem": None,
        "comment": "",
    }
    return render(request, "exports/request.html", context)


async def _answer(request: Request, client: Api, request_id: str, verb: str, comment: str) -> Response:
    body = {"comment": comment.strip() or None}
    try:
        await client.send("customers", "POST", f"/v1/customers/export-requests/{request_id}/{verb}", json=body)
    except UpstreamProblem as problem:
        if problem.status not in (403, 409, 422):
            raise
        doc = await client.get("customers", f"/v1/customers/export-requests/{request_id}")
        context = {
            "r": doc,
            "mine": _is_mine(client, doc),
            "approver": _approver(client),
            "filter_text": _filter_text,
            "problem": client.problem_text(problem),
            "comment": comment,
        }
        return render(request, "exports/request.html", context, status_code=problem.status)
    return RedirectResponse(f"/export-requests/{request_id}", status_code=303)


@router.post("/{request_id}/approve", include_in_schema=False)
async def approve(
    request: Request, request_id: str, client: Annotated[Api, Depends(api)], comment: Annotated[str, Form()] = ""
) -> Response:
    return await _answer(request, client, request_id, "approve", comment)


@router.post("/{request_id}/reject", include_in_schema=False)
async def reject(
    request: Request, request_id: str, client: Annotated[Api, Depends(api)], comment: Annotated[str, Form()] = ""
) -> Response:
    return await _answer(request, client, request_id, "reject", comment)


@router.get("/{request_id}/download", include_in_schema=False)
async def download(request_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    """The approved export as the service's CSV (the filter as requested, the rows as they are now)."""
    answer = await client.send("customers", "GET", f"/v1/customers/export-requests/{request_id}/download")
    return Response(
        answer.content,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": answer.headers.get("content-disposition", 'attachment; filename="customers.csv"')
        },
    )
