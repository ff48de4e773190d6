"""An opportunity's line items (``/pipeline/opportunities/{id}/lines``): the lines the pipeline
service holds (product, quantity, unit price, discount, line total) and the sum, with an editor
that replaces them all (``PUT /v1/opportunities/{id}/lines`` with ``If-Match``) and the choice
"the amount follows the lines". A product is typed by its SKU; a blank unit price is the price
list's. Each refusal at its input (``lines[i].unit_price`` of the API at the form's row)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_console.pages.sales.common import BLANK_ROWS, catalogue, form_errors, line_rows, posted_lines
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, render

lines_router = APIRouter(prefix="/pipeline/opportunities")
Client = Annotated[Api, Depends(api)]


def rows_of(opportunity: dict[str, Any]) -> list[dict[str, str]]:
    """The stored lines as the editor's rows (the SKU names the product)."""
    return [
        {
            "product": str(line.get("sku") or ""),
            "quantity": str(line.get("quantity") or ""),
            "unit_price": str(line.get("unit_price") or ""),
            "discount_percent": str(line.get("discount_percent") or ""),
        }
        for line in opportunity.get("lines") or []
    ]


async def _page(
    request: Request,
    client: Api,
    opportunity_id: str,
    *,
    rows: list[dict[str, str]] | None = None,
    follows: bool | None = None,
    etag: str | None = None,
    errors: dict[str, str] | None = None,
    refused: str = "",
    done: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    answer = await client.send("pipeline", "GET", f"/v1/opportunities/{opportunity_id}")
    opportunity = answer.json()
    context = {
        "o": opportunity,
        "etag": etag if etag is not None else answer.headers.get("ETag", ""),
        "rows": rows if rows is not None else rows_of(opportunity) + line_rows({}, BLANK_ROWS),
        "follows": bool(opportunity.get("amount_follows_lines")) if follows is None else follows,
        "products": await catalogue(client),
        "field_errors": errors or {},
        "refused": refused,
        "done": done,
    }
    return render(request, "sales/opportunity_lines.html", context, status_code=status_code)


@lines_router.get("/{opportunity_id}/lines", include_in_schema=False)
async def lines(request: Request, opportunity_id: str, client: Client, done: str = "") -> HTMLResponse:
    return await _page(request, client, opportunity_id, done=done)


@lines_router.post("/{opportunity_id}/lines", include_in_schema=False)
async def save_lines(request: Request, opportunity_id: str, client: Client) -> Response:
    form = await request.form()
    rows = line_rows(form)
    follows = form.get("amount_follows_lines") == "true"
    etag = str(form.get("etag") or "")
    unknown = client.console.catalogue.translate(client.session.language, "sales.unknown_sku")
    posted = await posted_lines(client, rows, unknown)
    if posted.errors:
        return await _page(
            request,
            client,
            opportunity_id,
            rows=rows,
            follows=follows,
            etag=etag,
            errors=posted.errors,
            status_code=422,
        )
    body = {"lines": posted.body, "amount_follows_lines": follows}
    try:
        await client.send(
            "pipeline", "PUT", f"/v1/opportunities/{opportunity_id}/lines", json=body, headers={"If-Match": etag}
        )
    except UpstreamProblem as problem:
        if problem.status not in (403, 409, 422):
            raise
        return await _page(
            request,
            client,
            opportunity_id,
            rows=rows,
            follows=follows,
            etag=etag,
            errors=form_errors(problem, posted.rows),
            refused=client.problem_text(problem),
            status_code=problem.status,
        )
    return RedirectResponse(f"/pipeline/opportunities/{opportunity_id}/lines?done=saved", status_code=303)
