"""Display names of owners and the pickers' choices, from the directory's public API.

The customers service holds owner ids only. ``GET /v1/users/{id}`` gives anyone the public card
(name, department), so names are the same for every reader and a short in-process cache serves
them: a list page of 20 rows would otherwise make up to 20 directory calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from crm_console.upstreams import UpstreamProblem, UpstreamUnavailable
from crm_console.web import Api

NAME_TTL_SECONDS = 300.0
MAX_CACHED = 5000
_names: dict[str, tuple[float, str]] = {}


async def _name(client: Api, user_id: str) -> str | None:
    cached = _names.get(user_id)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    try:
        card = await client.get("directory", f"/v1/users/{user_id}")
    except (UpstreamProblem, UpstreamUnavailable):
        return None  # an unknown or departed owner: the page shows the id rather than failing
    name = str(card.get("name") or user_id)
    if len(_names) >= MAX_CACHED:
        _names.clear()
    _names[user_id] = (time.monotonic() + NAME_TTL_SECONDS, name)
    return name


async def owner_names(client: Api, user_ids: Iterable[str | None]) -> dict[str, str]:
    """Name per user id (ids the directory does not know are left out)."""
    wanted = sorted({u for u in user_ids if u})
    found = await asyncio.gather(*(_name(client, u) for u in wanted))
    return {u: n for u, n in zip(wanted, found, strict=True) if n}


async def owner_choices(client: Api, me_id: str, me_name: str, may_list: bool) -> list[tuple[str, str]]:
    """The owner filter's choices: oneself, and for managers and admins the users they may list."""
    choices = [(me_id, me_name)]
    if not may_list:
        return choices
    try:
        page: dict[str, Any] = await client.get("directory", "/v1/users", params={"limit": 200, "sort": "name"})
    except (UpstreamProblem, UpstreamUnavailable):
        return choices
    return choices + [(u["id"], u["name"]) for u in page.get("items", []) if u.get("id") != me_id]


async def people_filter(client: Api, selected: str | None) -> list[tuple[str, str]]:
    """A list filter's people by name (oneself, then whom the directory lists to the person); the
    person a link filtered on stays offered, by name, even when the directory's page leaves them out."""
    user = client.session.user
    choices = await owner_choices(client, user.id if user else "", user.name if user else "", True)
    if selected and selected not in {value for value, _label in choices}:
        names = await owner_names(client, [selected])
        choices.append((selected, names.get(selected, selected)))
    return choices


async def department_choices(client: Api) -> list[tuple[str, str]]:
    """The department filter's choices (empty when the directory will not list them)."""
    try:
        page: dict[str, Any] = await client.get("directory", "/v1/departments", params={"limit": 200})
    except (UpstreamProblem, UpstreamUnavailable):
        return []
    return [(d["id"], d.get("name") or d["id"]) for d in page.get("items", [])]
