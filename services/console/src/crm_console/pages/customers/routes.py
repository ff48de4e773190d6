"""The customers list over ``GET /v1/customers`` (or ``/v1/recycle-bin``): every filter the API
offers as a form, up to four sort keys, the cursor as "load more" (htmx appends the next rows;
without JavaScript the link opens the next page), the list's CSV export. A 422 from the service
is shown next to the field it names.

The customer page itself (``/customers/{id}``) belongs to the ``customers_detail`` group; each row
links there with ``?from=<this list's API query>``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_console.pages.customers import create, transfer, views
from crm_console.pages.customers.listing import fetch_page, list_context, render_list
from crm_console.pages.customers.query import ListQuery
from crm_console.web import Api, api, render

router = APIRouter(prefix="/customers")


@router.get("", include_in_schema=False)
async def list_page(
    request: Request, client: Annotated[Api, Depends(api)], query: Annotated[ListQuery, Depends()]
) -> HTMLResponse:
    return await render_list(request, client, query.with_zone(client.session.timezone))


@router.get("/rows", include_in_schema=False)
async def more_rows(
    request: Request, client: Annotated[Api, Depends(api)], query: Annotated[ListQuery, Depends()]
) -> HTMLResponse:
    """The next page's rows and a new "load more" row (htmx swaps them in for the old one)."""
    query = query.with_zone(client.session.timezone)
    page = await fetch_page(client, query)
    context = list_context(client, query) | {
        "items": page["items"],
        "owners": page["owners"],
        "next_cursor": page.get("next_cursor"),
    }
    return render(request, "customers/rows.html", context)


@router.get("/export.csv", include_in_schema=False)
async def export(client: Annotated[Api, Depends(api)], query: Annotated[ListQuery, Depends()]) -> Response:
    """The list's filters and sort as the service's CSV export (UTF-8 with BOM, opens in Excel); an
    export held for approval (202) shows the person their export request instead."""
    query = query.with_zone(client.session.timezone)
    answer = await client.send("customers", "GET", "/v1/customers/export.csv", params=query.api_filters())
    if answer.status_code == 202:
        return RedirectResponse(f"/export-requests/{answer.json()['id']}?held=1", status_code=303)
    return Response(
        answer.content,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": answer.headers.get("content-disposition", 'attachment; filename="customers.csv"')
        },
    )


router.include_router(views.router)
router.include_router(transfer.router)
router.include_router(create.router)
