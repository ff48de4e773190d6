"""Notifications about contracts (crm.sales.v1): an instalment of a contract's payment plan that
became overdue is told to the contract's owner (the sales service publishes it once)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from crm_notifications.domain import planning
from crm_notifications.domain.planning import Intent
from crm_platform.contracts import sales
from crm_platform.events import EventEnvelope

Planner = Callable[[EventEnvelope], Awaitable[list[Intent]]]


def contract_planners() -> dict[str, Planner]:
    async def instalment_overdue(e: EventEnvelope) -> list[Intent]:
        data = sales.CONTRACT_INSTALMENT_OVERDUE.parse(e)
        return planning.contract_instalment_overdue(data, data.instalment_no)

    return {sales.CONTRACT_INSTALMENT_OVERDUE.name: instalment_overdue}
