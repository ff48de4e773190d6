"""What the sales service does when its customers change (hooks of the customer read model).

* merged (on the survivor) / merged_away (on the duplicate): every record of the duplicate moves
  to the survivor, each in a guarded write of its own with its event. Both events trigger the
  move, since they travel under different keys and either may arrive first; the second finds
  nothing left to move, and a redelivery finds every record already moved (idempotent).
* deleted / restored / purged need no write here: the read copy's status is what the use cases
  check (a deleted customer's records stay readable, but accept no new record or status move
  until it is restored), so a stale redelivery cannot undo anything.

One entry per aggregate that names a customer (:class:`Follower`): quotations, contracts and
tickets, listed in main.py, a line each; what a deleted customer still allows is each aggregate's
own rule (see the README).
"""

from __future__ import annotations

from typing import Protocol

from crm_platform.errors import Conflict
from crm_platform.events import EventEnvelope
from crm_platform.readmodels.customers import CustomerEvent, CustomerReadModel


class Follower(Protocol):
    """An aggregate whose records name a customer."""

    async def ids_of_customer(self, customer_id: str) -> list[str]:
        """The ids of the records of ``customer_id`` (an index lookup)."""
        ...

    async def move_to_survivor(
        self,
        record_id: str,
        duplicate_id: str,
        survivor_id: str,
        survivor: dict[str, object] | None,
        cause: EventEnvelope,
    ) -> bool:
        """Point one record of the merged-away ``duplicate_id`` at ``survivor_id`` (with its event);
        False when it did not name the duplicate any more (moved already)."""
        ...


class CustomerReactions:
    def __init__(self, customers: CustomerReadModel, followers: list[Follower]) -> None:
        self.customers = customers
        self.followers = followers

    def install(self) -> None:
        self.customers.add_hook("merged", self.merged)
        self.customers.add_hook("merged_away", self.merged_away)

    async def merged(self, event: CustomerEvent) -> None:
        if event.other_id:
            await self._move_all(event.other_id, event.customer_id, event)

    async def merged_away(self, event: CustomerEvent) -> None:
        if event.other_id:
            await self._move_all(event.customer_id, event.other_id, event)

    async def _move_all(self, duplicate_id: str, survivor_id: str, event: CustomerEvent) -> None:
        survivor = event.copy if event.customer_id == survivor_id else await self.customers.get(survivor_id)
        for follower in self.followers:
            for record_id in await follower.ids_of_customer(duplicate_id):
                await follower.move_to_survivor(record_id, duplicate_id, survivor_id, survivor, event.envelope)


async def refuse_if_customer_closed(
    customers: CustomerReadModel, customer_id: str, action: str, record: str, error: type[Conflict]
) -> None:
    """409 ``customer-deleted`` (``error``) when the record's customer is in the recycle bin or purged:
    the read copy as it is now decides, so a restore lifts it. ``record`` names it ("quotation")."""
    copy = await customers.get(customer_id)
    status = (copy or {}).get("status")
    if status in ("deleted", "purged"):
        where = "in the recycle bin: restore it first" if status == "deleted" else "purged"
        raise error(
            f"Cannot {action} the {record}: its customer {customer_id} is {where}.",
            extra={"action": action, "reason": "customer-deleted", "customer_id": customer_id},
        )
