"""Notifications about leads (crm.leads.v1): the new owner of a lead, and who asked for a conversion
that failed.

``crm.lead.conversion_failed`` does not say who asked for the conversion; ``crm.lead.conversion_requested``
does (``conversion.requested_by``), so it is kept per conversion id (collection ``lead_conversions``,
read by ``_id``). A failure whose request was never seen is told to the lead's owner.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from crm_notifications.domain import planning
from crm_notifications.domain.planning import Intent
from crm_platform.contracts import leads
from crm_platform.events import EventEnvelope

Planner = Callable[[EventEnvelope], Awaitable[list[Intent]]]


def lead_planners(conversions: Any) -> dict[str, Planner]:
    async def created(e: EventEnvelope) -> list[Intent]:
        return planning.lead_assigned(leads.LEAD_CREATED.parse(e).lead, e.actor)

    async def owner_changed(e: EventEnvelope) -> list[Intent]:
        data = leads.LEAD_OWNER_CHANGED.parse(e)
        return planning.lead_assigned(data.lead, e.actor, data.how)

    async def conversion_requested(e: EventEnvelope) -> list[Intent]:
        c = leads.LEAD_CONVERSION_REQUESTED.parse(e).conversion
        doc = {"requested_by": c.requested_by, "lead_id": e.subject}
        await conversions.update_one({"_id": c.conversion_id}, {"$set": doc}, upsert=True)
        return []

    async def conversion_failed(e: EventEnvelope) -> list[Intent]:
        data = leads.LEAD_CONVERSION_FAILED.parse(e)
        asked = await conversions.find_one({"_id": data.conversion_id}, {"requested_by": 1})
        return planning.lead_conversion_failed(data, (asked or {}).get("requested_by"))

    return {
        leads.LEAD_CREATED.name: created,
        leads.LEAD_OWNER_CHANGED.name: owner_changed,
        leads.LEAD_CONVERSION_REQUESTED.name: conversion_requested,
        leads.LEAD_CONVERSION_FAILED.name: conversion_failed,
    }
