"""A read copy of the pool service's claim rules, fed only by ``crm.pool.claim_rules_changed``.

One document per pool rule (global, or a department subtree), applied by the rule's
version: an older or repeated event changes nothing. The holding limit per rep is not
here: it stays this service's own setting.
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from crm_platform.consumer import apply_versioned
from crm_platform.contracts import pool
from crm_platform.events import EventEnvelope

Document = dict[str, Any]


class ClaimRulesCopy:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.collection: AsyncCollection[Document] = db["pool_claim_rules"]

    async def apply(self, envelope: EventEnvelope) -> bool:
        rules = pool.CLAIM_RULES_CHANGED.parse(envelope).claim_rules
        return await apply_versioned(self.collection, envelope, {"_id": rules.rule_id, **rules.model_dump()})

    async def live(self) -> list[Document]:
        return [r async for r in self.collection.find({"deleted": False})]
