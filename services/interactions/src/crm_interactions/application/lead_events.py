"""What this service does when a lead is converted: its follow-ups move to the customer it became.

On ``crm.lead.converted`` every interaction and task of the lead that has no customer yet gets
``customer_id`` of the event (``lead_id`` stays), each in its own guarded write with its own
``crm.interaction.updated`` / ``crm.task.updated`` event (reason "lead converted", change
customer_id None -> the customer). The records are read in bounded batches, so a lead with
hundreds of follow-ups is many small writes, never one giant one. Idempotent: a redelivered
event finds nothing without a customer (and a record moved meanwhile is left as it is).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crm_interactions.adapters.leads import LeadReadModel
from crm_interactions.adapters.repository import Repository
from crm_interactions.application.customer_events import ACTOR, Followed
from crm_interactions.domain import interactions as interaction_rules
from crm_interactions.domain import tasks as task_rules
from crm_platform.consumer import Handler
from crm_platform.contracts import interactions as ev
from crm_platform.contracts import leads as lev
from crm_platform.events import EventEnvelope, EventFactory
from crm_platform.store import Change

Document = dict[str, Any]
REASON = "lead converted"


class LeadConversions:
    def __init__(self, repo: Repository, leads: LeadReadModel, event: EventFactory, batch_size: int = 100) -> None:
        self.repo = repo
        self.leads = leads
        self.event = event
        self.batch_size = batch_size
        self.kinds = (
            Followed(
                repo.interactions,
                repo.interaction_store,
                ev.INTERACTION_UPDATED,
                "interaction",
                interaction_rules.snapshot,
            ),
            Followed(repo.tasks, repo.task_store, ev.TASK_UPDATED, "task", task_rules.snapshot, task_rules.refresh),
        )

    def handlers(self) -> Mapping[str, Handler]:
        """Every lead event into the copy; ``crm.lead.converted`` moves the lead's follow-ups too."""
        return {**self.leads.handlers(), lev.LEAD_CONVERTED.name: self.converted}

    async def converted(self, envelope: EventEnvelope) -> None:
        data = lev.LEAD_CONVERTED.parse(envelope)
        await self.leads.store(envelope)
        for kind in self.kinds:
            await self.move(kind, data.lead.lead_id, data.customer_id, envelope)
        # The moved follow-ups take the customer's owner (if its copy is not here yet, its
        # created event does that when it comes).
        await self.repo.follow_customer_owner(data.customer_id)

    async def move(self, kind: Followed, lead_id: str, customer_id: str, cause: EventEnvelope) -> int:
        """Move the lead's records without a customer to ``customer_id``, a batch at a time; returns how many."""
        moved = 0
        seen: set[str] = set()
        while True:
            batch = await self.repo.lead_records_without_customer(kind.collection, lead_id, self.batch_size)
            fresh = [record for record in batch if record["_id"] not in seen]
            if not fresh:
                return moved  # none left (or only records someone else holds: never loop on them)
            for record in fresh:
                seen.add(record["_id"])
                if await self._move_one(kind, record, customer_id, cause):
                    moved += 1

    async def _move_one(self, kind: Followed, record: Document, customer_id: str, cause: EventEnvelope) -> bool:
        changed: list[bool] = []

        def decide(doc: Document, version: int) -> Change:
            if doc.get("customer_id") is not None:
                return Change(None)  # moved already (a redelivery, or a merge got there first)
            doc["customer_id"] = customer_id
            kind.refresh(doc)
            changes = [ev.FieldChange(field="customer_id", old=None, new=customer_id)]
            data = kind.updated.data_model(**{kind.snapshot_field: kind.snapshot(doc)}, changes=changes, reason=REASON)
            actor = cause.actor or ACTOR
            changed.append(True)
            return Change(doc, [self.event(kind.updated, doc["_id"], data, version, actor, cause.traceparent)])

        await kind.store.mutate(record["_id"], decide, current=record)
        return bool(changed)
