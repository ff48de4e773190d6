"""MongoDB access of the pool service: rules (an aggregate with an outbox), clocks (a projection),
stage positions (from pipeline events) and notices (one per customer, kind and deadline).

Clocks are written whole and guarded by their ``rev`` (see :func:`crm_platform.consumer.apply_once`):
the embedded store turns ``$set`` of a datetime into a string, and the scheduler's range
queries need real datetimes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from crm_platform.clock import Clock
from crm_platform.errors import NotFound
from crm_platform.store import VersionedStore
from crm_pool.domain.recycling import StagePlace

Document = dict[str, Any]


class PoolRepository:
    def __init__(self, db: AsyncDatabase[Document], clock: Clock, wake_relay: Callable[[], None]) -> None:
        self.rules: AsyncCollection[Document] = db["pool_rules"]
        self.clocks: AsyncCollection[Document] = db["clocks"]
        self.stages: AsyncCollection[Document] = db["stages"]
        self.notices: AsyncCollection[Document] = db["notices"]
        self.customers: AsyncCollection[Document] = db["customers"]
        self.opportunities: AsyncCollection[Document] = db["opportunities"]
        self.lead_clocks: AsyncCollection[Document] = db["lead_clocks"]  # see crm_pool.adapters.lead_clocks
        self.rule_store = VersionedStore(
            self.rules, clock, wake_relay=wake_relay, not_found=lambda i: NotFound(f"No pool rule with id {i}.")
        )
        self.notice_store = VersionedStore(self.notices, clock, wake_relay=wake_relay)

    async def ensure_indexes(self) -> None:
        # One live rule per scope ("global" or the department path); deleted rules drop the key (sparse).
        await self.rules.create_indexes([IndexModel([("scope", ASCENDING)], name="scope", unique=True, sparse=True)])
        await self.clocks.create_indexes(
            [
                # The scheduler's and the preview's range queries (named idx_<field>: the embedded
                # store only uses a single-field index whose name ends in _<field>). No index on
                # parked_until_ms: most clocks have 0 there, and the embedded store would pick it
                # over touch_ms and scan (1.6 s per idle run at 100k).
                IndexModel([("touch_ms", ASCENDING)], name="idx_touch_ms"),
                IndexModel([("won_ms", ASCENDING)], name="idx_won_ms"),
                IndexModel([("owner_id", ASCENDING), ("deadline", ASCENDING)], name="owner_deadline"),
                IndexModel([("department_path", ASCENDING)], name="department_path"),
            ]
        )

    # --- rules ------------------------------------------------------------------------------

    async def live_rules(self) -> list[Document]:
        return [r async for r in self.rules.find({"deleted": False}, projection={"outbox": 0})]

    async def get_rule(self, rule_id: str) -> Document | None:
        return await self.rules.find_one({"_id": rule_id})

    # --- stages -----------------------------------------------------------------------------

    async def stage_positions(self) -> dict[str, StagePlace]:
        stages = self.stages.find({})
        return {s["_id"]: StagePlace(str(s.get("pipeline_id") or ""), int(s["position"])) async for s in stages}

    # --- clocks -----------------------------------------------------------------------------

    async def get_clock(self, customer_id: str) -> Document | None:
        return await self.clocks.find_one({"_id": customer_id})

    async def replace_clock(self, clock: Document) -> bool:
        """Write a clock read earlier, unless someone changed it meanwhile (its rev moved)."""
        rev = int(clock.get("rev", 0))
        doc = {**clock, "rev": rev + 1}
        result = await self.clocks.replace_one({"_id": clock["_id"], "rev": rev}, doc)
        if result.matched_count:
            clock["rev"] = rev + 1
        return bool(result.matched_count)

    async def unpark_all(self) -> None:
        """Every parked clock back into the runs (after a rule change): integers, so ``$set`` is safe."""
        await self.clocks.update_many({"parked_until_ms": {"$gt": 0}}, {"$set": {"parked_until_ms": 0}})
        await self.lead_clocks.update_many({"parked_until_ms": {"$gt": 0}}, {"$set": {"parked_until_ms": 0}})
