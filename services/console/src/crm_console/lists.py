"""What the sales pages' lists share (quotations, contracts, tickets): the filters a page takes
from its query, one keyset page of the API's list, the API's 422 at the filter it names, and the
link to the next page; and the console's own 403 for a form the person's permissions do not grant."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

from crm_console.registry import may
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api


@dataclass
class ListPage:
    """One page of a list: the filters as asked (blanks dropped), its items, the API's refusal of a
    filter (``{field: reason}``) and the query string of the next page ("" on the last)."""

    filters: dict[str, str]
    items: list[dict[str, Any]] = field(default_factory=list)
    field_errors: dict[str, str] = field(default_factory=dict)
    next_query: str = ""

    def context(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "filters": self.filters,
            "field_errors": self.field_errors,
            "next_query": self.next_query,
        }


async def list_page(
    request: Request, client: Api, service: str, path: str, filter_names: Iterable[str], page_size: int
) -> ListPage:
    """``GET path`` of ``service`` with the query's filters and cursor; a 422 (a filter the API
    refuses) is an empty page with the reason at the filter, every other problem goes up."""
    query = request.query_params
    filters = {name: str(query.get(name) or "").strip() for name in filter_names}
    page = ListPage({name: value for name, value in filters.items() if value})
    params: dict[str, Any] = {**page.filters, "limit": page_size}
    if query.get("cursor"):
        params["cursor"] = query["cursor"]
    try:
        answer = await client.get(service, path, params=params)
    except UpstreamProblem as problem:
        if problem.status != 422:
            raise
        page.field_errors = problem.field_errors()
        return page
    page.items = answer.get("items") or []
    cursor = answer.get("next_cursor")
    page.next_query = urlencode({**page.filters, "cursor": cursor}) if cursor else ""
    return page


def require(client: Api, permission: str) -> None:
    """A 403 from the console itself when the signed-in person lacks ``permission``."""
    if not may(client.session.user, permission):
        raise UpstreamProblem("console", 403, "Forbidden", "")
