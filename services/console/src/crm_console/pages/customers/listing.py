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
from crm_console.records import complete_page
from crm_console.registry import may
from crm_console.upstreams import UpstreamProblem, UpstreamUnavailable
from crm_console.web import Api, render
from crm_platform.permissions import Permission

MANAGE_USERS_ROLES = frozenset({"admin", "manager"})


async def fetch_page(client: Api, query: ListQuery) -> dict[str, Any]:
    """One page of the list, with the owners' names (``owners``: id → name)."""
    path = "/v1/recycle-bin" if query.in_bin() else "/v1/customers"
    page: dict[str, Any] = complete_page(await client.get("customers", path, params=query.api_params()))
    page["owners"] = await owner_names(client, (c.get("owner_id") for c in page["items"]))
    return page


def list_context(client: Api, query: ListQuery) -> dict[str, Any]:
    roles = client.session.user
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


async def _page_or_problem(client: Api, query: ListQuery) -> dict[str, Any] | UpstreamProblem:
    """The page, or the service's 422 (a filter it refuses), which the page shows at the field."""
    try:
        return await fetch_page(client, query)
    except UpstreamProblem as problem:
        if problem.status != 422:
            raise
        return problem


async def render_list(
    request: Request,
    client: Api,
    query: ListQuery,
    extra: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The list page for ``query`` (``extra``: e.g. a saved-view form's error). The rows, the
    pickers' choices and the saved views are asked for at once; only the rows may fail the page."""
    page, pickers, saved = await asyncio.gather(_page_or_problem(client, query), _pickers(client), saved_views(client))
    context = list_context(client, query) | (extra or {}) | pickers | {"saved_views": saved}
    if isinstance(page, UpstreamProblem):
        context |= {"items": [], "owners": {}, "next_cursor": None, "field_errors": page.field_errors()}
        context |= {"problem": page}
        status_code = 422
    else:
        context |= {"items": page["items"], "owners": page["owners"], "next_cursor": page.get("next_cursor")}
        context |= {"field_errors": {}, "problem": None}
    return render(request, "customers/list.html", context, status_code=status_code)


async def saved_views(client: Api) -> list[dict[str, Any]]:
    """My saved views (``/v1/customer-views``), each with ``href``: the list it opens. Empty if the
    service cannot say now: the list still shows."""
    try:
        found: list[dict[str, Any]] = await client.get("customers", "/v1/customer-views")
    except (UpstreamProblem, UpstreamUnavailable):
        return []
    return [{**v, "href": "/customers?" + urlencode(v.get("query") or {})} for v in found]
