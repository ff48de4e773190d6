"""Notifications about quotations (crm.sales.v1): the approvers of a submitted quotation, and its
owner when it is approved or rejected.

The approvers are found in the directory copy: the users of the quotation's department and of each
department above it (one indexed equality on ``department_path`` each; a scope reaches a department
only from it or from above), each resolved against the role definitions and kept when they hold
``quotations:approve`` over the quotation's department (domain/quotations.py). An administrator
whose department is elsewhere finds it on the list (``status=pending_approval``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from crm_notifications.domain import quotations as rules
from crm_notifications.domain.planning import Intent
from crm_platform.auth import Principal
from crm_platform.contracts import sales
from crm_platform.events import EventEnvelope
from crm_platform.readmodels.directory import DirectoryReadModel
from crm_platform.roles import RoleBook

Planner = Callable[[EventEnvelope], Awaitable[list[Intent]]]


def ancestors(path: str | None) -> list[str]:
    """/hq/east/t1 -> [/hq/east/t1, /hq/east, /hq]: the department and those above it."""
    parts = [p for p in (path or "").split("/") if p]
    return ["/" + "/".join(parts[:n]) for n in range(len(parts), 0, -1)]


def quotation_planners(directory: DirectoryReadModel, roles: RoleBook | None) -> dict[str, Planner]:
    async def name_of(user_id: str | None) -> str:
        user = await directory.user(user_id) if user_id else None
        return str((user or {}).get("name") or user_id or "-")

    async def candidates(q: sales.QuotationSnapshot) -> list[Principal]:
        out: list[Principal] = []
        for path in ancestors(q.department_path):
            async for user in directory.users.find({"department_path": path}):
                if user.get("status", "active") != "active":
                    continue
                principal = Principal(
                    user_id=str(user["_id"]),
                    roles=frozenset(str(r) for r in user.get("roles") or []),
                    department_path=path,
                )
                out.append(roles.resolve(principal) if roles is not None else principal)
        return out

    async def submitted(e: EventEnvelope) -> list[Intent]:
        q = sales.QUOTATION_SUBMITTED.parse(e).quotation
        return rules.submitted(q, await name_of(q.owner_id), await candidates(q))

    async def approved(e: EventEnvelope) -> list[Intent]:
        data = sales.QUOTATION_APPROVED.parse(e)
        return rules.decided(data.quotation, True, await name_of(e.actor), data.comment)

    async def rejected(e: EventEnvelope) -> list[Intent]:
        data = sales.QUOTATION_REJECTED.parse(e)
        return rules.decided(data.quotation, False, await name_of(e.actor), data.comment)

    return {
        sales.QUOTATION_SUBMITTED.name: submitted,
        sales.QUOTATION_APPROVED.name: approved,
        sales.QUOTATION_REJECTED.name: rejected,
    }
