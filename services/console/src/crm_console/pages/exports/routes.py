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
        "held": held,
        "filter_text": _filter_text,
        "problem": None,
    }
    return render(request, "exports/page.html", context)


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
