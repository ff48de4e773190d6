"""A read copy of the leads service's leads, fed only by ``crm.leads.v1``.

Every lead event carries the lead's full snapshot (``lead``), so each one replaces the copy
whole, applied by ``aggregateversion`` (an older or repeated event changes nothing). The copy
keeps what this service needs to accept a follow-up on a lead and to decide who sees it:
company name, owner (none: in the lead pool), department, status, deleted, and the customer
a conversion made of it. Campaign events share the topic and are not handled here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from crm_platform.auth import Principal
from crm_platform.consumer import Handler, apply_versioned
from crm_platform.contracts import leads as ev
from crm_platform.events import EventEnvelope, EventType

Document = dict[str, Any]

#: The data-scope module whose reach decides who sees a lead (and so its follow-ups).
LEADS = "leads"

#: Every lead event: each carries the lead's snapshot under ``lead``.
LEAD_EVENTS: tuple[EventType[Any], ...] = (
    ev.LEAD_CREATED,
    ev.LEAD_UPDATED,
    ev.LEAD_STATUS_CHANGED,
    ev.LEAD_OWNER_CHANGED,
    ev.LEAD_DELETED,
    ev.LEAD_CONVERSION_REQUESTED,
    ev.LEAD_CONVERSION_PROGRESSED,
    ev.LEAD_CONVERTED,
    ev.LEAD_CONVERSION_FAILED,
)


def state_from_snapshot(lead: ev.LeadSnapshot) -> Document:
    return {
        "_id": lead.lead_id,
        "company_name": lead.company_name,
        "owner_id": lead.owner_id,
        "department_path": lead.department_path,
        "in_pool": lead.owner_id is None,
        "status": lead.status,
        "deleted": lead.deleted,
        "customer_id": lead.customer_id,
    }


class LeadReadModel:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    def handlers(self) -> Mapping[str, Handler]:
        return {t.name: self.apply for t in LEAD_EVENTS}

    async def apply(self, envelope: EventEnvelope) -> None:
        await self.store(envelope)

    async def store(self, envelope: EventEnvelope) -> bool:
        """Keep the snapshot; False if the copy already had this version or a newer one."""
        lead = ev.LeadSnapshot.model_validate(envelope.data["lead"])
        return await apply_versioned(self.collection, envelope, state_from_snapshot(lead))

    async def get(self, lead_id: str) -> Document | None:
        return await self.collection.find_one({"_id": lead_id})

    @staticmethod
    def visible_to(principal: Principal, lead: Document | None) -> bool:
        """As the leads service decides: its owner and whoever's ``leads`` scope reaches its department;
        a lead in the pool is seen by everyone with a ``leads`` scope (anyone may claim it)."""
        if lead is None or lead.get("deleted") or principal.scope(LEADS) is None:
            return False
        if lead.get("in_pool"):
            return True
        return principal.can_see_owned(lead.get("owner_id"), lead.get("department_path"), module=LEADS)
