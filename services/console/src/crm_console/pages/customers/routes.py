"""The customers list over ``GET /v1/customers`` (customers service): its filters as a form, its
sort, its cursor as "load more" (htmx appends the next rows; without JavaScript the link opens the
next page). A 422 from the service is shown next to the field it names."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict

from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, render

router = APIRouter(prefix="/customers")

PAGE_SIZE = 20
SORTS = ("-updated_at", "name", "-created_at", "tier,name", "-last_followed_up_at")
KINDS = ("company", "person")
TIERS = ("A", "B", "C")
STAGES = ("lead", "prospect", "customer", "repeat_customer", "dormant", "churned")


class ListQuery(BaseModel):
    """The form's fields, passed on to the service as they are (empty ones left out)."""

    model_config = ConfigDict(extra="ignore")

    q: str = ""
    kind: str = ""
    tier: str = ""
    lifecycle_stage: str = ""
    in_pool: str = ""
    sort: str = ""
    cursor: str = ""

    def filters(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump(exclude={"cursor"}).items() if v}

    def upstream_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {**self.filters(), "limit": PAGE_SIZE}
        if self.cursor:
            params["cursor"] = self.cursor
        return params

    def next_query(self, cursor: str) -> str:
        return urlencode({**self.filters(), "cursor": cursor})


async def _page(client: Api, query: ListQuery) -> dict[str, Any]:
    page: dict[str, Any] = await client.get("customers", "/v1/customers", params=query.upstream_params())
    return page


@router.get("", include_in_schema=False)
async def list_page(
    request: Request, client: Annotated[Api, Depends(api)], query: Annotated[ListQuery, Depends()]
) -> HTMLResponse:
    context: dict[str, Any] = {"query": query, "sorts": SORTS, "kinds": KINDS, "tiers": TIERS, "stages": STAGES}
    try:
        page = await _page(client, query)
    except UpstreamProblem as problem:
        if problem.status != 422:
            raise
        context |= {"items": [], "next_cursor": None, "field_errors": problem.field_errors(), "problem": problem}
        return render(request, "customers/list.html", context, status_code=422)
    context |= {"items": page["items"], "next_cursor": page.get("next_cursor"), "field_errors": {}, "problem": None}
    return render(request, "customers/list.html", context)


@router.get("/rows", include_in_schema=False)
async def more_rows(
    request: Request, client: Annotated[Api, Depends(api)], query: Annotated[ListQuery, Depends()]
) -> HTMLResponse:
    """The next page's rows and a new "load more" row (htmx swaps them in for the old one)."""
    page = await _page(client, query)
    context = {"query": query, "items": page["items"], "next_cursor": page.get("next_cursor")}
    return render(request, "customers/rows.html", context)


@router.get("/{customer_id}", include_in_schema=False)
async def detail(request: Request, customer_id: str, client: Annotated[Api, Depends(api)]) -> HTMLResponse:
    """A placeholder until the customer page group grows: the record's main fields."""
    customer = await client.get("customers", f"/v1/customers/{customer_id}")
    return render(request, "customers/detail.html", {"customer": customer})
