"""A read copy of the pool service's claim rules, fed only by ``crm.pool.claim_rules_changed``.

One document per pool rule (global, or a department subtree), applied by the rule's
version: an older or repeated event changes nothing. Each rule carries the claim part
(cool-down, which pool) and the holding limit per owner of its scope (``max_held``, None
when the rule sets none); the service's own ``max_customers_per_rep`` is the default.
"""

from __future__ import annotations

import time
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from crm_platform.consumer import apply_versioned
from crm_platform.contracts import pool
from crm_platform.events import EventEnvelope

Document = dict[str, Any]


class ClaimRulesCopy:
    def __init__(self, db: AsyncDatabase[Document], max_age_seconds: float = 2.0) -> None:
        self.collection: AsyncCollection[Document] = db["pool_claim_rules"]
        # The rules as last read, for the holding limit every create checks: a create stays at its
        # four store commands. An event applied here drops them at once; one another replica
        # applied is seen within ``max_age_seconds``.
        self.max_age_seconds = max_age_seconds
        self._cached: list[Document] | None = None
        self._read_at = 0.0
        self._generation = 0

    async def apply(self, envelope: EventEnvelope) -> bool:
        rules = pool.CLAIM_RULES_CHANGED.parse(envelope).claim_rules
        applied = await apply_versioned(self.collection, envelope, {"_id": rules.rule_id, **rules.model_dump()})
        self._generation += 1
        self._cached = None
        return applied

    async def live(self) -> list[Document]:
        return [r async for r in self.collection.find({"deleted": False})]

    async def current(self) -> list[Document]:
        """:meth:`live`, read at most every ``max_age_seconds`` (and at once after an event applied here)."""
        now = time.monotonic()
        if self._cached is not None and now - self._read_at <= self.max_age_seconds:
            return self._cached
        generation = self._generation
        rules = await self.live()
        if generation == self._generation:  # no event applied while reading: keep it
            self._cached, self._read_at = rules, now
        return rules
