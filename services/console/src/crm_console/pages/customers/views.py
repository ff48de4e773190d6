"""Saved list views over the customers service's ``/v1/customer-views`` (each person's own).

A view stores the list's query in the API's spelling (filters and sort, see query.py), so it
opens as ``/customers?<its query>`` and means the same to the API, the console and integrators.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from crm_console.pages.customers.listing import render_list
from crm_console.pages.customers.query import ListQuery
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api

router = APIRouter(prefix="/views")


@router.post("", include_in_schema=False)
async def save(
    request: Request,
    client: Annotated[Api, Depends(api)],
    name: Annotated[str, Form()] = "",
    list_query: Annotated[str, Form()] = "",
) -> Response:
    """Save the list's current filters and sort under a name; back to the list, showing it."""
    query = ListQuery.parse(list_query, client.session.timezone)
    try:
        await client.send(
            "customers", "POST", "/v1/customer-views", json={"name": name.strip(), "query": query.api_filters()}
        )
    except UpstreamProblem as problem:
        if problem.status not in (409, 422):
            raise
        reason = problem.field_errors().get("name") or client.problem_text(problem)
        return await render_list(request, client, query, {"view_error": reason, "view_name": name}, 422)
    return RedirectResponse(f"/customers?{query.query_string()}&saved=1", status_code=303)


@router.post("/{view_id}/delete", include_in_schema=False)
async def delete(
    view_id: str, client: Annotated[Api, Depends(api)], back: Annotated[str, Form()] = ""
) -> RedirectResponse:
    await client.send("customers", "DELETE", f"/v1/customer-views/{view_id}")
    target = back if back.startswith("/customers") else "/customers"
    return RedirectResponse(target, status_code=303)
