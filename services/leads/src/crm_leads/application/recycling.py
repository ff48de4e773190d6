"""Recycling of leads nobody works: the pool service decides, this service applies.

The pool keeps a clock per lead from ``crm.leads.v1`` and, under its rules, publishes
``crm.pool.lead_release_decided`` (keyed by the lead id) with the lead's version it saw. This
service is the only writer of leads, so it applies the decision: the lead goes back to the
lead pool (``crm.lead.owner_changed`` with ``how="recycled"`` and the rule's reason), but only if
it is still exactly as the pool saw it: same version (so not followed up, moved, edited,
claimed or assigned since), same owner, open (new, contacted, qualified) and not deleted.
Otherwise the decision is void and nothing is written; a redelivered decision finds the lead
at a newer version and changes nothing either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crm_leads.adapters.repository import LeadRepository
from crm_leads.domain import leads as rules
from crm_platform.clock import Clock
from crm_platform.consumer import Handler
from crm_platform.contracts import leads as ev
from crm_platform.contracts import pool
from crm_platform.errors import NotFound
from crm_platform.events import EventEnvelope, EventFactory
from crm_platform.store import Change

Document = dict[str, Any]
#: The statuses a lead is recycled from (a disqualified or converted lead is nobody's work).
OPEN = ("new", "contacted", "qualified")


def still_stale(doc: Document, version: int, decision: pool.LeadReleaseDecided) -> bool:
    """True if the lead (at ``version``) is as the pool saw it when it decided."""
    return (
        not doc.get("deleted")
        and not doc.get("in_pool")
        and doc.get("owner_id") == decision.owner_id
        and doc.get("status") in OPEN
        and version == decision.lead_version
    )


class Recycling:
    def __init__(self, repo: LeadRepository, clock: Clock, source: str) -> None:
        self.repo = repo
        self.clock = clock
        self.event = EventFactory(source, clock)

    def handlers(self) -> Mapping[str, Handler]:
        return {pool.LEAD_RELEASE_DECIDED.name: self.on_release_decided}

    async def on_release_decided(self, envelope: EventEnvelope) -> None:
        await self.apply(pool.LEAD_RELEASE_DECIDED.parse(envelope))

    async def apply(self, decision: pool.LeadReleaseDecided) -> bool:
        """Release the lead to the lead pool if it is still stale; True if it was released."""
        current = await self.repo.get(decision.lead_id)
        if current is None or not still_stale(current, int(current.get("version", 0)), decision):
            return False
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            if not still_stale(doc, version - 1, decision):
                return Change(None)
            previous = doc.get("owner_id")
            rules.set_owner(doc, None, None, None)
            doc["updated_at"] = now
            rules.refresh(doc)
            data = ev.LeadOwnerChanged(
                lead=rules.snapshot(doc),
                previous_owner_id=previous,
                owner_id=None,
                how="recycled",
                reason=decision.reason_text,
            )
            return Change(doc, [self.event(ev.LEAD_OWNER_CHANGED, doc["_id"], data, version, pool.SYSTEM_ACTOR)])

        try:
            stored = await self.repo.store.mutate(decision.lead_id, decide, current=current)
        except NotFound:
            return False
        return int(stored.get("version", 0)) > int(current.get("version", 0))
