"""The list page's parts shared by its handlers: one page of customers with their owners' names,
the pickers' choices, the saved views, and the page itself."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse

from crm_console.pages.customers.people import department_choices, owner_choices, owner_names
from crm_console.pages.customers.query import KINDS, SIZES, SORT_KEYS, SOURCES, STAGES, TIERS, ListQuery
from crm_console.registry import may
from crm_console.upstreams import UpstreamProblem, UpstreamUnavailable
from crm_console.web import Api, render
from crm_platform.permissions import Permission

MANAGE_USERS_ROLES = frozenset({"admin", "manager"})


async def fetch_page(client: Api, query: ListQuery) -> dict[str, Any]:
    """One page of the list, with the owners' names (``owners``: id → name)."""
    path = "/v1/recycle-bin" if query.in_bin() else "/v1/customers"
    page: dict[str, Any] = await client.get("customers", path, params=query.api_params())
    page["owners"] = await owner_names(client, (c.get("owner_id") for c in page["items"]))
    return page


def list_context(client: Api, query: ListQuery) -> dict[str, Any]:
    roles = client.session.user.roles if client.session.user else []
    return {
        "query": query,
        "sort_keys": SORT_KEYS,
        "kinds": KINDS,
        "tiers": TIERS,
        "stages": STAGES,
        "sizes": SIZES,
        "sources": SOURCES,
        "can": {
            "bin": may(roles, Permission("customers:recycle_bin")),
            "create": may(roles, Permission("customers:create")),
            "import_": may(roles, Permission("customers:import")),
            "export": may(roles, Permission("customers:export")),
        },
        "view_name": "",
        "view_error": None,
    }


async def _pickers(client: Api) -> dict[str, Any]:
    user = client.session.user
    roles = set(user.roles) if user else set()
    owners, departments = await asyncio.gather(
        owner_choices(client, user.id if user else "", user.name if user else "", bool(roles & MANAGE_USERS_ROLES)),
        department_choices(client),
    )
    return {"owner_choices": owners, "department_choices": departments}


async def render_list(
    request: Request,
    client: Api,
    query: ListQuery,
    extra: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The list page for ``query`` (``extra``: e.g. a saved-view form's error)."""
    context = list_context(client, query) | (extra or {})
    pickers_task = asyncio.ensure_future(_pickers(client))
    saved_task = asyncio.ensure_future(saved_views(client))
    try:
        page = await fetch_page(client, query)
    except UpstreamProblem as problem:
        if problem.status != 422:
            pickers_task.cancel()
            saved_task.cancel()
            raise
        context |= {"items": [], "owners": {}, "next_cursor": None, "field_errors": problem.field_errors()}
        context |= {"problem": problem}
        status_code = 422
    else:
        context |= {"items": page["items"], "owners": page["owners"], "next_cursor": page.get("next_cursor")}
        context |= {"field_errors": {}, "problem": None}
    context |= await pickers_task
    context["saved_views"] = await saved_task
    return render(request, "customers/list.html", context, status_code=status_code)


async def saved_views(client: Api) -> list[dict[str, Any]]:
    """My saved views (``/v1/customer-views``), each with ``href``: the list it opens. Empty if the
    service cannot say now: the list still shows."""
    try:
        found: list[dict[str, Any]] = await client.get("customers", "/v1/customer-views")
    except (UpstreamProblem, UpstreamUnavailable):
        return []
    return [{**v, "href": "/customers?" + urlencode(v.get("query") or {})} for v in found]
