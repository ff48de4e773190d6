"""What the customers service does with other services' events."""

from __future__ import annotations

from collections.abc import Mapping

from crm_customers.application.customers import Customers
from crm_platform.clock import as_utc
from crm_platform.consumer import Handler
from crm_platform.contracts import interactions
from crm_platform.events import EventEnvelope


def handlers(service: Customers) -> Mapping[str, Handler]:
    async def interaction_logged(event: EventEnvelope) -> None:
        data = interactions.INTERACTION_LOGGED.parse(event)
        # Idempotent by nature: only a later follow-up moves the date.
        await service.record_follow_up(data.customer_id, as_utc(data.occurred_at), data.author_id)

    return {interactions.INTERACTION_LOGGED.name: interaction_logged}
