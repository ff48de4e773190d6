"""``/my-recycle-bin``: the customers the signed-in person deleted, last deleted first, 50 a page
("older" follows the service's ``next_cursor``), each with a Restore button
(``POST /v1/my-recycle-bin/{id}/restore``). A refused restore (the owner's holding limit: 409
naming ``held`` and ``limit``; a duplicate; someone else already restored it: 404) is the page
again with the reason, in the user's language, at the customer's row."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_console.records import complete_page
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, render

router = APIRouter(prefix="/my-recycle-bin")
Client = Annotated[Api, Depends(api)]
PAGE_SIZE = 50


async def bin_page(
    request: Request, client: Api, cursor: str = "", refused: dict[str, str] | None = None, status_code: int = 200
) -> HTMLResponse:
    params: dict[str, Any] = {"limit": PAGE_SIZE} | ({"cursor": cursor} if cursor else {})
    page = complete_page(await client.get("customers", "/v1/my-recycle-bin", params))
    restored = request.query_params.get("restored", "")
    context = {
        "items": page["items"],
        "next_cursor": page.get("next_cursor"),
        "cursor": cursor,
        "refused": refused,
        "restored": {"id": restored, "name": request.query_params.get("name", "")} if restored else None,
    }
    return render(request, "recycle_bin/page.html", context, status_code=status_code)


@router.get("", include_in_schema=False)
async def my_bin(request: Request, client: Client, cursor: str = "") -> HTMLResponse:
    return await bin_page(request, client, cursor)


@router.post("/{customer_id}/restore", include_in_schema=False)
async def restore(request: Request, customer_id: str, client: Client) -> Response:
    form = await request.form()
    try:
        await client.send("customers", "POST", f"/v1/my-recycle-bin/{customer_id}/restore")
    except UpstreamProblem as problem:
        if problem.status not in (404, 409, 412, 423):
            raise
        refused = {"id": customer_id, "text": client.problem_text(problem)}
        return await bin_page(request, client, str(form.get("cursor") or ""), refused, problem.status)
    name = str(form.get("name") or "")
    return RedirectResponse(f"/my-recycle-bin?{urlencode({'restored': customer_id, 'name': name})}", status_code=303)
