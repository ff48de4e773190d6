"""The public pool (公海) and my customers' countdown.

* ``/pool``: customers in the pool (``GET /v1/customers?in_pool=true`` with the filters the
  customers service offers), each with a Claim button (``POST /v1/customers/{id}/claim``). Of two
  reps claiming at once exactly one wins; the other gets a 409 naming the new owner, shown here
  with the owner's display name from the directory ("already claimed by 张三").
* ``/pool/mine``: my customers, soonest to return to the pool first, with the days left
  (the pool service's ``GET /v1/pool/my-customers``).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict

from crm_console.records import complete_page
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, is_htmx, render

router = APIRouter(prefix="/pool")

PAGE_SIZE = 20
KINDS = ("company", "person")
TIERS = ("A", "B", "C")
SORTS = ("-updated_at", "name", "-created_at", "industry,name", "province,city,name")
Document = dict[str, Any]


class PoolQuery(BaseModel):
    """The pool's filters, passed on to the customers list as they are (empty ones left out)."""

    model_config = ConfigDict(extra="ignore")

    q: str = ""
    kind: str = ""
    tier: str = ""
    industry: str = ""
    province: str = ""
    city: str = ""
    sort: str = ""
    cursor: str = ""

    def filters(self) -> dict[str, str]:
        return {k: v.strip() for k, v in self.model_dump(exclude={"cursor"}).items() if v.strip()}

    def upstream_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {**self.filters(), "in_pool": "true", "limit": PAGE_SIZE}
        if self.cursor:
            params["cursor"] = self.cursor
        return params

    def next_query(self, cursor: str) -> str:
        return urlencode({**self.filters(), "cursor": cursor})


def _base(query: PoolQuery) -> dict[str, Any]:
    return {
        "query": query,
        "kinds": KINDS,
        "tiers": TIERS,
        "sorts": SORTS,
        "field_errors": {},
        "problem": None,
        "outcome": None,
    }


@router.get("", include_in_schema=False)
async def pool_page(
    request: Request, client: Annotated[Api, Depends(api)], query: Annotated[PoolQuery, Depends()]
) -> HTMLResponse:
    context = _base(query)
    try:
        page = complete_page(await client.get("customers", "/v1/customers", params=query.upstream_params()))
    except UpstreamProblem as problem:
        if problem.status != 422:
            raise
        context |= {"items": [], "next_cursor": None, "field_errors": problem.field_errors(), "problem": problem}
        return render(request, "pool/list.html", context, status_code=422)
    context |= {"items": page["items"], "next_cursor": page.get("next_cursor")}
    return render(request, "pool/list.html", context)


@router.get("/rows", include_in_schema=False)
async def more_rows(
    request: Request, client: Annotated[Api, Depends(api)], query: Annotated[PoolQuery, Depends()]
) -> HTMLResponse:
    page = complete_page(await client.get("customers", "/v1/customers", params=query.upstream_params()))
    context = _base(query) | {"items": page["items"], "next_cursor": page.get("next_cursor")}
    return render(request, "pool/rows.html", context)


async def display_name(client: Api, user_id: str) -> str:
    """The directory's name for a user (its public card), or the id if it cannot say."""
    try:
        card = await client.get("directory", f"/v1/users/{user_id}")
    except UpstreamProblem:
        return user_id
    return str(card.get("name") or user_id)


@router.post("/{customer_id}/claim", include_in_schema=False)
async def claim(
    request: Request, customer_id: str, client: Annotated[Api, Depends(api)], name: Annotated[str, Form()] = ""
) -> Response:
    """Answers with the row's new state (htmx swaps the row), or the pool page without JavaScript."""
    outcome: dict[str, Any] = {"customer_id": customer_id, "name": name, "claimed": False, "owner": None}
    try:
        await client.send("customers", "POST", f"/v1/customers/{customer_id}/claim")
        outcome["claimed"] = True
    except UpstreamProblem as problem:
        if problem.status not in (404, 409, 422, 423):
            raise
        owner_id = problem.extensions.get("owner_id")
        if problem.status == 409 and isinstance(owner_id, str) and owner_id:
            outcome["owner"] = await display_name(client, owner_id)
        elif problem.status == 404:
            outcome["reason"] = "pool.gone"
        else:
            outcome["detail"] = client.problem_text(problem)
    if not is_htmx(request):
        if outcome["claimed"]:
            return RedirectResponse(f"/customers/{customer_id}", status_code=303)
        page = complete_page(await client.get("customers", "/v1/customers", params=PoolQuery().upstream_params()))
        context = _base(PoolQuery()) | {"items": page["items"], "next_cursor": page.get("next_cursor")}
        return render(request, "pool/list.html", context | {"outcome": outcome}, status_code=409)
    return render(request, "pool/claimed.html", {"outcome": outcome})


@router.get("/mine", include_in_schema=False)
async def my_customers(request: Request, client: Annotated[Api, Depends(api)]) -> HTMLResponse:
    found = await client.get("pool", "/v1/pool/my-customers")
    return render(request, "pool/mine.html", {"items": found["items"]})
