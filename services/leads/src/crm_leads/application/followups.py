"""Follow-up tracking: the interactions logged on a lead, counted on the lead itself.

Fed by ``crm.interaction.logged`` on ``crm.interactions.v1``: an interaction that names a lead
(``lead_id`` at the top of the event, or in its ``interaction`` snapshot) adds one to the lead's
``followup_count`` and moves ``last_followup_at`` to when it happened (never back). The count
lives on the lead document, so it goes through the lead's guarded write: a new version and a
``crm.lead.followed_up`` event carrying the whole lead (the pool's lead clock and any read copy
apply lead events by version). Each interaction counts once: its id is kept on the lead
(``followup_ids``) in that same write, so a redelivered event changes nothing.

Kept simple on purpose: an interaction deleted or moved to another lead later is not taken off
the count (the count is "follow-ups logged", not "follow-ups that still exist"); an interaction
on a lead that is unknown, deleted or converted is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter

from crm_leads.adapters.repository import LeadRepository
from crm_leads.domain import leads as rules
from crm_platform.clock import Clock, as_utc
from crm_platform.consumer import Handler
from crm_platform.contracts import interactions
from crm_platform.contracts import leads as ev
from crm_platform.errors import NotFound
from crm_platform.events import EventEnvelope, EventFactory
from crm_platform.store import Change

Document = dict[str, Any]
_MOMENT = TypeAdapter(datetime)
#: A lead that changes no more: a follow-up logged on it after its conversion is not counted.
CLOSED = ("converted",)


def _ms(value: datetime) -> datetime:
    """Millisecond precision, as the store keeps it, so a stored moment compares equal after a round trip."""
    value = as_utc(value)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def lead_of(data: Mapping[str, Any]) -> str | None:
    """The lead an interaction event names, if any (read with ``.get``: events of services that do not
    know leads carry none)."""
    snapshot = data.get("interaction") or {}
    lead_id = data.get("lead_id") or (snapshot.get("lead_id") if isinstance(snapshot, Mapping) else None)
    return str(lead_id) if lead_id else None


class Followups:
    def __init__(self, repo: LeadRepository, clock: Clock, source: str) -> None:
        self.repo = repo
        self.clock = clock
        self.event = EventFactory(source, clock)

    def handlers(self) -> Mapping[str, Handler]:
        return {interactions.INTERACTION_LOGGED.name: self.on_interaction_logged}

    async def on_interaction_logged(self, envelope: EventEnvelope) -> None:
        data = envelope.data
        lead_id = lead_of(data)
        if lead_id is None:
            return  # a follow-up of a customer: not ours
        snapshot = data.get("interaction") or {}
        interaction_id = data.get("interaction_id") or snapshot.get("interaction_id") or envelope.subject
        occurred = data.get("occurred_at") or snapshot.get("occurred_at")
        occurred_at = _MOMENT.validate_python(occurred) if occurred else envelope.time
        await self.count(
            lead_id,
            str(interaction_id),
            occurred_at,
            author_id=data.get("author_id") or snapshot.get("author_id"),
            channel=data.get("channel") or snapshot.get("channel"),
        )

    async def count(
        self,
        lead_id: str,
        interaction_id: str,
        occurred_at: datetime,
        *,
        author_id: str | None = None,
        channel: str | None = None,
    ) -> Document | None:
        """Count one follow-up on the lead (once per ``interaction_id``); the lead as stored, None if ignored."""
        current = await self.repo.get(lead_id)
        if current is None or current.get("deleted"):
            return None
        at = _ms(occurred_at.replace(tzinfo=occurred_at.tzinfo or UTC))

        def decide(doc: Document, version: int) -> Change:
            seen = list(doc.get("followup_ids") or [])
            if doc.get("deleted") or doc.get("status") in CLOSED or interaction_id in seen:
                return Change(None)
            doc["followup_ids"] = [*seen, interaction_id]
            doc["followup_count"] = int(doc.get("followup_count") or 0) + 1
            last = doc.get("last_followup_at")
            if last is None or as_utc(last) < at:
                doc["last_followup_at"] = at
            data = ev.LeadFollowedUp(
                lead=rules.snapshot(doc),
                interaction_id=interaction_id,
                author_id=author_id,
                channel=channel,
                occurred_at=at,
            )
            return Change(doc, [self.event(ev.LEAD_FOLLOWED_UP, lead_id, data, version, author_id)])

        try:
            return await self.repo.store.mutate(lead_id, decide, current=current)
        except NotFound:
            return None
