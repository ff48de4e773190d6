"""What this service does when its customers change (hooks of the customer read model).

* merged (on the survivor) / merged_away (on the duplicate): the duplicate's
  interactions, tasks and feedback move to the survivor, each a guarded write with
  its own ``*.updated`` event (field ``customer_id``). Both events trigger the move,
  since they travel under different keys and either may arrive first; the second
  finds nothing left to move.
* deleted / restored / purged: the customer's records are hidden (kept, but 404 and
  left out of lists, stats and reminders) or shown again, as the read copy's status
  says *now*, so a stale redelivery undoes nothing. Each change is an ``*.updated``
  event with the field ``hidden``.

* created / owner_changed / released / claimed, and both sides of a merge: the customer's
  interactions and feedback keep its owner as the copy says *now* (``customer_owner_id``,
  the list's "records of my customers"): one indexed read of the customer's records and a
  write by ``_id`` for each that differs, no new version and no event (the field is bookkeeping
  of this service, in no snapshot; see ``Repository.follow_customer_owner``).

Every hook is idempotent: a repeated event finds every record already in line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pymongo.asynchronous.collection import AsyncCollection

from crm_interactions.adapters.repository import Repository
from crm_interactions.domain import feedback as feedback_rules
from crm_interactions.domain import interactions as interaction_rules
from crm_interactions.domain import tasks as task_rules
from crm_platform.contracts import customers as cev
from crm_platform.contracts import interactions as ev
from crm_platform.events import EventEnvelope, EventFactory, EventType
from crm_platform.readmodels.customers import CustomerEvent
from crm_platform.store import Change, VersionedStore

Document = dict[str, Any]
HIDDEN_STATUSES = ("deleted", "purged")
ACTOR = "system:interactions"
#: The customer events after which the customer's records may need its owner again (a created
#: customer may already have records: a lead's follow-ups, moved before its copy arrived).
OWNER_EVENTS = frozenset(
    t.name.removeprefix("crm.customer.") for t in (cev.CUSTOMER_CREATED, cev.OWNER_CHANGED, cev.RELEASED, cev.CLAIMED)
)


@dataclass(frozen=True)
class Followed:
    """One kind of record that follows its customer: where it lives and how its update event is built."""

    collection: AsyncCollection[Document]
    store: VersionedStore
    updated: EventType[Any]
    snapshot_field: str
    snapshot: Callable[[Document], BaseModel]
    refresh: Callable[[Document], Any] = lambda doc: doc


class CustomerReactions:
    def __init__(self, repo: Repository, event: EventFactory) -> None:
        self.repo = repo
        self.event = event
        self.kinds = (
            Followed(
                repo.interactions,
                repo.interaction_store,
                ev.INTERACTION_UPDATED,
                "interaction",
                interaction_rules.snapshot,
            ),
            Followed(repo.tasks, repo.task_store, ev.TASK_UPDATED, "task", task_rules.snapshot, task_rules.refresh),
            Followed(repo.feedback, repo.feedback_store, ev.FEEDBACK_UPDATED, "feedback", feedback_rules.snapshot),
        )

    async def merged(self, event: CustomerEvent) -> None:
        if event.other_id:
            await self._move_all(event.other_id, event.customer_id, event)

    async def merged_away(self, event: CustomerEvent) -> None:
        if event.other_id:
            await self._move_all(event.customer_id, event.other_id, event)

    async def changed(self, event: CustomerEvent) -> None:
        """After an owner's change, the customer's records take its owner as the copy has it now
        (so a stale redelivery changes nothing)."""
        if event.type.removeprefix("crm.customer.") in OWNER_EVENTS and event.copy is not None:
            await self.repo.follow_customer_owner(event.customer_id)

    async def visibility(self, event: CustomerEvent) -> None:
        if event.copy is None:
            return
        hidden = event.copy.get("status") in HIDDEN_STATUSES
        reason = f"customer {event.copy.get('status')}" if hidden else "customer restored"
        for kind in self.kinds:
            for record in await self.repo.records_of_customer(kind.collection, event.customer_id):
                await self._change(kind, record, event.envelope, reason, hidden=hidden)

    async def _move_all(self, duplicate_id: str, survivor_id: str, event: CustomerEvent) -> None:
        # On "merged" the event's own copy is the survivor's: no need to read it.
        survivor = (
            event.copy if event.customer_id == survivor_id else await self.repo.customers.find_one({"_id": survivor_id})
        )
        hidden = survivor is not None and survivor.get("status") in HIDDEN_STATUSES
        for kind in self.kinds:
            for record in await self.repo.records_of_customer(kind.collection, duplicate_id):
                await self._change(
                    kind, record, event.envelope, "customer merged", move=(duplicate_id, survivor_id), hidden=hidden
                )
        # The moved records came with the duplicate's owner: they take the survivor's.
        await self.repo.follow_customer_owner(survivor_id)

    async def _change(
        self,
        kind: Followed,
        record: Document,
        cause: EventEnvelope,
        reason: str,
        *,
        hidden: bool,
        move: tuple[str, str] | None = None,
    ) -> None:
        def decide(doc: Document, version: int) -> Change:
            changes: list[ev.FieldChange] = []
            if move is not None:
                if doc.get("customer_id") != move[0]:
                    return Change(None)  # moved already
                doc["customer_id"] = move[1]
                changes.append(ev.FieldChange(field="customer_id", old=move[0], new=move[1]))
            if bool(doc.get("hidden")) != hidden:
                changes.append(ev.FieldChange(field="hidden", old=bool(doc.get("hidden")), new=hidden))
                doc["hidden"] = hidden
            if not changes:
                return Change(None)
            kind.refresh(doc)
            data = kind.updated.data_model(**{kind.snapshot_field: kind.snapshot(doc)}, changes=changes, reason=reason)
            actor = cause.actor or ACTOR
            return Change(doc, [self.event(kind.updated, doc["_id"], data, version, actor, cause.traceparent)])

        # The record as the query found it is the first attempt's state (one read less per record).
        await kind.store.mutate(record["_id"], decide, current=record)
