"""What the customers service does with other services' events."""

from __future__ import annotations

from collections.abc import Mapping

from crm_customers.adapters.claim_rules import ClaimRulesCopy
from crm_customers.application.customers import Customers
from crm_platform.clock import as_utc
from crm_platform.consumer import Handler
from crm_platform.contracts import interactions, pool
from crm_platform.events import EventEnvelope


def handlers(service: Customers, claim_rules: ClaimRulesCopy) -> Mapping[str, Handler]:
    async def interaction_logged(event: EventEnvelope) -> None:
        data = interactions.INTERACTION_LOGGED.parse(event)
        if data.customer_id is None:
            return  # a follow-up on a lead (lead_id): no customer to follow up yet
        # Idempotent by nature: only a later follow-up moves the date.
        await service.record_follow_up(data.customer_id, as_utc(data.occurred_at), data.author_id)

    async def interaction_moved(event: EventEnvelope) -> None:
        data = interactions.INTERACTION_UPDATED.parse(event)
        snapshot = data.interaction
        moved = any(c.field == "customer_id" and c.old is None and c.new for c in data.changes)
        if moved and snapshot.customer_id is not None and snapshot.status == "active":
            # A lead's follow-up now belongs to the customer the lead became: it follows the customer up.
            await service.record_follow_up(snapshot.customer_id, as_utc(snapshot.occurred_at), snapshot.author_id)

    async def release_decided(event: EventEnvelope) -> None:
        # Ownership stays ours: the pool only decides; we release if nothing changed since its basis.
        await service.apply_pool_release(pool.RELEASE_DECIDED.parse(event))

    async def claim_rules_changed(event: EventEnvelope) -> None:
        await claim_rules.apply(event)

    return {
        interactions.INTERACTION_LOGGED.name: interaction_logged,
        interactions.INTERACTION_UPDATED.name: interaction_moved,
        pool.RELEASE_DECIDED.name: release_decided,
        pool.CLAIM_RULES_CHANGED.name: claim_rules_changed,
    }
