"""The related records of the 360 view, each from its own service, read in parallel.

A panel whose service is down, refuses, or has not heard of the customer yet (the other services
learn of a new customer from its events, a moment later) shows why, in place: the rest of the
page still works. Everyone named in the page (owner, lock holder, history actors) is looked up
once in the directory's public cards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Any

from crm_console.records import complete_opportunities
from crm_console.upstreams import UpstreamProblem, UpstreamUnavailable
from crm_console.web import Api

PANEL_SIZE = 20
TIMELINE_SIZE = 50


@dataclass
class Panel:
    """One section's rows, or why it has none (a message key and the service's words)."""

    items: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None  # message key: customers_detail.panel.<reason>
    detail: str = ""
    service: str = ""
    next_cursor: str | None = None


async def _panel(client: Api, service: str, call: Awaitable[Any], key: str = "items") -> Panel:
    """The call's rows as a panel; a failure becomes the panel's message, never the page's."""
    try:
        answer = await call
    except UpstreamUnavailable:
        return Panel(error="customers_detail.panel.down", service=service)
    except UpstreamProblem as problem:
        reason = {403: "forbidden", 404: "not_yet"}.get(problem.status, "failed")
        return Panel(error=f"customers_detail.panel.{reason}", detail=client.problem_text(problem), service=service)
    if isinstance(answer, list):
        return Panel(items=answer)
    return Panel(items=list(answer.get(key) or []), next_cursor=answer.get("next_cursor"))


def _task_scope(roles: Iterable[str]) -> str:
    """The widest task list the user may read: every task (admins), the team's (managers), theirs."""
    roles = set(roles)
    return "all" if "admin" in roles else "team" if "manager" in roles else "mine"


async def _opportunities(page: Awaitable[Any]) -> Any:
    return complete_opportunities(await page)


async def load(client: Api, customer_id: str, timezone: str) -> dict[str, Panel]:
    roles = client.session.user.roles if client.session.user else []
    calls = {
        "opportunities": _panel(
            client,
            "pipeline",
            _opportunities(
                client.get("pipeline", "/v1/opportunities", {"customer_id": customer_id, "limit": PANEL_SIZE})
            ),
        ),
        "followups": _panel(
            client,
            "interactions",
            client.get("interactions", f"/v1/customers/{customer_id}/interactions", {"limit": PANEL_SIZE}),
        ),
        "tasks": _panel(
            client,
            "interactions",
            client.get(
                "interactions",
                "/v1/tasks",
                {"customer_id": customer_id, "status": "all", "scope": _task_scope(roles), "limit": PANEL_SIZE},
            ),
        ),
        "feedback": _panel(
            client,
            "interactions",
            client.get("interactions", "/v1/feedback", {"customer_id": customer_id, "limit": PANEL_SIZE}),
        ),
        "history": _panel(client, "customers", client.get("customers", f"/v1/customers/{customer_id}/history")),
        "timeline": _panel(
            client,
            "reporting",
            client.get("reporting", f"/v1/customers/{customer_id}/timeline", {"limit": TIMELINE_SIZE, "tz": timezone}),
        ),
    }
    done = await asyncio.gather(*calls.values())
    panels = dict(zip(calls, done, strict=True))
    panels["history"].items.reverse()  # newest change first
    return panels


async def names(client: Api, user_ids: Iterable[str | None]) -> dict[str, str]:
    """id → name from the directory's public cards; an id it cannot show stays an id."""
    wanted = sorted({u for u in user_ids if u})[:30]

    async def one(user_id: str) -> str:
        try:
            card = await client.get("directory", f"/v1/users/{user_id}")
        except (UpstreamProblem, UpstreamUnavailable):
            return user_id
        return str(card.get("name") or user_id)

    found = await asyncio.gather(*(one(u) for u in wanted))
    return dict(zip(wanted, found, strict=True))
