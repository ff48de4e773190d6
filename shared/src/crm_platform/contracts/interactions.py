"""Events of the interactions service that other services already rely on (``crm.interactions.v1``).

The interactions service (a later issue) publishes these; the customers service
consumes ``crm.interaction.logged`` to keep each customer's "last followed up" fresh.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from crm_platform.events import define

TOPIC = "crm.interactions.v1"


class InteractionLogged(BaseModel):
    interaction_id: str
    customer_id: str
    author_id: str
    channel: str
    occurred_at: datetime
    contact_ids: list[str] = []
    opportunity_id: str | None = None


INTERACTION_LOGGED = define(
    "crm.interaction.logged",
    InteractionLogged,
    TOPIC,
    description="A follow-up (call, email, meeting, visit, chat, note) was logged for a customer.",
)
