"""The lead clocks: one document per lead, built from ``crm.leads.v1`` (collection ``lead_clocks``).

Written whole and guarded by ``rev`` (the embedded store turns ``$set`` of a datetime into a
string), applied by the lead's version (a stale or repeated event changes nothing).
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]


class LeadClocks:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.collection: AsyncCollection[Document] = db["lead_clocks"]

    async def ensure_indexes(self) -> None:
        await self.collection.create_indexes(
            [
                # The sweep's and the preview's range (named idx_<field>, as the embedded store wants).
                # As for the customers' clocks, no index on parked_until_ms (mostly 0: the planner would
                # pick it and scan).
                IndexModel([("work_ms", ASCENDING)], name="idx_work_ms"),
            ]
        )

    async def get(self, lead_id: str) -> Document | None:
        return await self.collection.find_one({"_id": lead_id})

    async def insert(self, clock: Document) -> None:
        await self.collection.insert_one({**clock, "rev": 1})

    async def replace(self, clock: Document) -> bool:
        """Write a clock read earlier, unless someone changed it meanwhile (its rev moved)."""
        rev = int(clock.get("rev", 0))
        result = await self.collection.replace_one({"_id": clock["_id"], "rev": rev}, {**clock, "rev": rev + 1})
        if result.matched_count:
            clock["rev"] = rev + 1
        return bool(result.matched_count)

    async def unpark_all(self) -> None:
        await self.collection.update_many({"parked_until_ms": {"$gt": 0}}, {"$set": {"parked_until_ms": 0}})

    async def reset(self) -> None:
        await self.collection.delete_many({})
