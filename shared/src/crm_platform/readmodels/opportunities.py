"""A read copy of the pipeline service's opportunities, fed only by ``crm.pipeline.v1``.

Every opportunity event carries the full :class:`OpportunitySnapshot`, so each one
replaces the copy whole, applied by ``aggregateversion`` (an older or repeated event
changes nothing). The copy keeps what another service needs to link a record to an
opportunity and to decide who may see it: customer, owner, department, status,
stage name, hidden.

Usage in a service::

    opportunities = OpportunityReadModel(kit.db["opportunities"])
    kit.on_startup(lambda _: opportunities.ensure_indexes())
    kit.consume([contracts.pipeline.TOPIC], opportunities.handlers())
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection

from crm_platform.auth import Principal
from crm_platform.consumer import Handler, apply_versioned
from crm_platform.contracts import pipeline as ev
from crm_platform.events import EventEnvelope

Document = dict[str, Any]

#: The snapshot fields the copy keeps. Dates are stored as ISO strings (BSON has no date-only type).
KEPT_FIELDS = (
    "name",
    "customer_id",
    "contact_ids",
    "amount",
    "currency",
    "stage_id",
    "stage_name",
    "stage_kind",
    "status",
    "owner_id",
    "department_id",
    "department_path",
    "hidden",
    "expected_close_date",
)

INDEXES = [
    IndexModel([("customer_id", ASCENDING)], name="customer_id"),
    IndexModel([("owner_id", ASCENDING)], name="owner_id"),
    # A customer's open, visible opportunities (the pool's clocks): one index search on all three
    # equalities; idx_status and idx_hidden tell the embedded store the fields are scalars (else
    # each is compiled as an array test of every row the index finds).
    IndexModel([("customer_id", ASCENDING), ("status", ASCENDING), ("hidden", ASCENDING)], name="customer_open"),
    IndexModel([("status", ASCENDING)], name="idx_status"),
    IndexModel([("hidden", ASCENDING)], name="idx_hidden"),
]


def state_from_snapshot(snapshot: ev.OpportunitySnapshot) -> Document:
    data = snapshot.model_dump(mode="json")
    state: Document = {"_id": snapshot.opportunity_id, "opportunity_id": snapshot.opportunity_id}
    state.update({name: data.get(name) for name in KEPT_FIELDS})
    return state


class OpportunityReadModel:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def ensure_indexes(self) -> None:
        await self.collection.create_indexes(INDEXES)

    def handlers(self) -> Mapping[str, Handler]:
        """One handler per opportunity event type (every one carries the snapshot under ``opportunity``)."""
        return {t.name: self.apply for t in ev.OPPORTUNITY_EVENTS}

    async def apply(self, envelope: EventEnvelope) -> None:
        await self.store(envelope)

    async def store(self, envelope: EventEnvelope) -> bool:
        """Keep the snapshot; False if the copy already had this version or a newer one."""
        snapshot = ev.OpportunitySnapshot.model_validate(envelope.data["opportunity"])
        return await apply_versioned(self.collection, envelope, state_from_snapshot(snapshot))

    async def get(self, opportunity_id: str) -> Document | None:
        return await self.collection.find_one({"_id": opportunity_id})

    @staticmethod
    def visible_to(principal: Principal, copy: Document | None) -> bool:
        """The pipeline service's rule: the owner, or a caller whose opportunities scope reaches it."""
        if copy is None or copy.get("hidden"):
            return False
        return principal.can_see_owned(copy.get("owner_id"), copy.get("department_path"), module="opportunities")
