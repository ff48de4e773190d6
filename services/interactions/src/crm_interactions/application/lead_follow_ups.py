"""Follow-ups on leads (线索): interactions and tasks logged with ``lead_id`` instead of ``customer_id``.

A lead is known here from the leads service's events (adapters/leads.py). Who sees a lead's
follow-ups: whoever sees the lead (its owner, whoever's ``leads`` scope reaches its department,
anyone with a ``leads`` scope while it is in the lead pool), and each record's author (with the
author's managers), as for a customer's. A lead has no contacts or opportunities: those come
with the customer it becomes. When it is converted, its follow-ups move to that customer
(application/lead_events.py) and keep ``lead_id``.
"""

from __future__ import annotations

from typing import Any

from crm_interactions.adapters.leads import LeadReadModel
from crm_interactions.application.references import References
from crm_platform.auth import Principal
from crm_platform.errors import ValidationFailed

Document = dict[str, Any]


def exactly_one(customer_id: str | None, lead_id: str | None) -> None:
    """An interaction is on a customer or on a lead: one of them, not both (422 naming the field)."""
    if customer_id is not None and lead_id is not None:
        raise ValidationFailed.for_field("lead_id", "give customer_id or lead_id, not both")
    if customer_id is None and lead_id is None:
        raise ValidationFailed.for_field("customer_id", "give customer_id, or lead_id for a follow-up on a lead")


async def lead_follow_up(refs: References, principal: Principal, data: Any) -> Document:
    """Check an interaction logged on a lead: the lead may be followed up, and nothing names what
    only a customer has. Raises 422 naming the field; returns the lead's copy."""
    exactly_one(data.customer_id, data.lead_id)
    lead = await refs.lead(principal, data.lead_id)
    no_customer_yet({"contact_ids": data.contact_ids, "opportunity_id": data.opportunity_id})
    return lead


def no_customer_yet(values: Document) -> None:
    """A follow-up on a lead names no contacts and no opportunity until the lead is converted."""
    if values.get("contact_ids"):
        raise ValidationFailed.for_field("contact_ids", "a lead has no contacts; they come with its conversion")
    if values.get("opportunity_id"):
        raise ValidationFailed.for_field("opportunity_id", "a lead has no opportunities; they come with its conversion")


async def sees_lead_records(refs: References, principal: Principal, lead_id: str | None) -> bool:
    """Whoever sees the lead sees every follow-up on it."""
    if lead_id is None or refs.leads is None:
        return False
    return LeadReadModel.visible_to(principal, await refs.leads.get(lead_id))
