"""What the pipeline service does when its customers change (hooks of the customer read model).

* merged (on the survivor) / merged_away (on the duplicate): the duplicate's
  opportunities move to the survivor, each a guarded write with its own
  ``crm.opportunity.customer_changed``. Both events trigger the move, since they
  travel under different keys and either may arrive first; the second finds
  nothing left to move.
* deleted / restored / purged: the customer's opportunities are hidden (kept, but
  404 and left out of lists) or shown again, as the read copy's status says *now*,
  so a stale redelivery undoes nothing. Each change is a ``crm.opportunity.updated``
  with the field ``hidden``.

Every hook is idempotent: a repeated event finds every opportunity already in line.
"""

from __future__ import annotations

from crm_pipeline.adapters.repository import Repository
from crm_pipeline.application.opportunities import Opportunities
from crm_platform.readmodels.customers import CustomerEvent


class CustomerReactions:
    def __init__(self, repo: Repository, opportunities: Opportunities) -> None:
        self.repo = repo
        self.opportunities = opportunities

    async def merged(self, event: CustomerEvent) -> None:
        if event.other_id:
            await self._move_all(event.other_id, event.customer_id, event)

    async def merged_away(self, event: CustomerEvent) -> None:
        if event.other_id:
            await self._move_all(event.customer_id, event.other_id, event)

    async def _move_all(self, duplicate_id: str, survivor_id: str, event: CustomerEvent) -> None:
        for opportunity_id in await self.repo.opportunity_ids_of_customer(duplicate_id):
            await self.opportunities.move_to_survivor(opportunity_id, duplicate_id, survivor_id, event.envelope)

    async def visibility(self, event: CustomerEvent) -> None:
        for opportunity_id in await self.repo.opportunity_ids_of_customer(event.customer_id):
            await self.opportunities.sync_visibility(opportunity_id, event.copy, event.envelope)
