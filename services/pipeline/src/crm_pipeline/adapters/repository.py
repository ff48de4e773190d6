"""The pipeline service's collections, their indexes, and the queries its views make.

Every aggregate (pipeline, opportunity, target) is written through a
:class:`VersionedStore`: state, version and outbox events in one guarded write.
``customers`` is the read copy of the customers service's customers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from crm_platform.clock import Clock
from crm_platform.errors import NotFound
from crm_platform.store import VersionedStore

Document = dict[str, Any]

OPPORTUNITY_INDEXES = [
    # List views: visibility prefix (owner, department subtree) plus the default sort; hidden ones drop out.
    IndexModel([("hidden", ASCENDING), ("s.updated_at", DESCENDING)], name="hidden_updated"),
    IndexModel([("owner_id", ASCENDING), ("hidden", ASCENDING), ("s.updated_at", DESCENDING)], name="owner_updated"),
    IndexModel(
        [("department_path", ASCENDING), ("hidden", ASCENDING), ("s.updated_at", DESCENDING)], name="dept_updated"
    ),
    IndexModel([("customer_id", ASCENDING)], name="customer"),
    IndexModel([("pipeline_id", ASCENDING), ("stage_id", ASCENDING)], name="pipeline_stage"),
    IndexModel([("status", ASCENDING), ("s.updated_at", DESCENDING)], name="status_updated"),
    IndexModel([("pending_approval", ASCENDING)], name="pending_approval"),
    # The funnel (cohort by creation day), the forecast (won day, expected close day).
    IndexModel([("pipeline_id", ASCENDING), ("created_on", ASCENDING)], name="pipeline_created_on"),
    IndexModel([("won_on", ASCENDING)], name="won_on"),
    IndexModel([("expected_close_date", ASCENDING)], name="expected_close_date"),
    # Sorts.
    IndexModel([("s.expected_close_date", ASCENDING)], name="sort_close"),
    IndexModel([("s.amount", ASCENDING)], name="sort_amount"),
    IndexModel([("s.name", ASCENDING)], name="sort_name"),
    IndexModel([("s.created_at", ASCENDING)], name="sort_created"),
]

TARGET_INDEXES = [
    IndexModel([("scope", ASCENDING), ("scope_id", ASCENDING), ("year", ASCENDING)], name="scope_year"),
    IndexModel([("department_path", ASCENDING), ("year", ASCENDING)], name="dept_year"),
]

PIPELINE_INDEXES = [
    IndexModel([("is_default", ASCENDING), ("default_since", DESCENDING)], name="default"),
]

LIST_PROJECTION = {"outbox": 0, "stage_history": 0}


class Repository:
    def __init__(self, db: AsyncDatabase[Document], clock: Clock, wake_relay: Any) -> None:
        self.pipelines: AsyncCollection[Document] = db["pipelines"]
        self.opportunities: AsyncCollection[Document] = db["opportunities"]
        self.targets: AsyncCollection[Document] = db["targets"]
        self.customers: AsyncCollection[Document] = db["customers"]  # the read copy
        self.pipeline_store = VersionedStore(
            self.pipelines, clock, wake_relay=wake_relay, not_found=lambda i: NotFound(f"No pipeline with id {i}.")
        )
        self.opportunity_store = VersionedStore(
            self.opportunities,
            clock,
            wake_relay=wake_relay,
            not_found=lambda i: NotFound(f"No opportunity with id {i}."),
        )
        self.target_store = VersionedStore(
            self.targets, clock, wake_relay=wake_relay, not_found=lambda i: NotFound(f"No target with id {i}.")
        )

    async def ensure_indexes(self) -> None:
        await self.opportunities.create_indexes(OPPORTUNITY_INDEXES)
        await self.targets.create_indexes(TARGET_INDEXES)
        await self.pipelines.create_indexes(PIPELINE_INDEXES)

    # --- pipelines ----------------------------------------------------------------------------

    async def pipeline(self, pipeline_id: str) -> Document | None:
        return await self.pipelines.find_one({"_id": pipeline_id})

    async def default_pipeline(self) -> Document | None:
        # The newest is_default one: making another pipeline default is two writes, and a
        # crash between them must still leave exactly one answer.
        cursor = (
            self.pipelines.find({"is_default": True}).sort([("default_since", DESCENDING), ("_id", ASCENDING)]).limit(1)
        )
        return next(iter([d async for d in cursor]), None)

    async def all_pipelines(self) -> list[Document]:
        return [
            d
            async for d in self.pipelines.find({}, projection={"outbox": 0}).sort(
                [("created_at", ASCENDING), ("_id", ASCENDING)]
            )
        ]

    async def stages_in_use(self, pipeline_id: str, stage_ids: list[str]) -> dict[str, int]:
        """How many opportunities (any status, hidden too) sit in each of these stages."""
        if not stage_ids:
            return {}
        counts: dict[str, int] = {}
        cursor = self.opportunities.find(
            {"pipeline_id": pipeline_id, "stage_id": {"$in": stage_ids}}, projection={"stage_id": 1}
        )
        async for doc in cursor:
            counts[doc["stage_id"]] = counts.get(doc["stage_id"], 0) + 1
        return counts

    # --- opportunities ------------------------------------------------------------------------

    async def opportunity(self, opportunity_id: str) -> Document | None:
        return await self.opportunities.find_one({"_id": opportunity_id})

    def find_opportunities(self, query: Document, sort: list[tuple[str, int]], limit: int) -> AsyncIterator[Document]:
        return self.opportunities.find(query, projection=LIST_PROJECTION).sort(sort).limit(limit)

    async def count_opportunities(self, query: Document) -> int:
        return await self.opportunities.count_documents(query)

    async def opportunities_where(self, query: Document, projection: Document | None = None) -> list[Document]:
        return [d async for d in self.opportunities.find(query, projection=projection or {"outbox": 0})]

    async def opportunity_ids_of_customer(self, customer_id: str) -> list[str]:
        return [d["_id"] async for d in self.opportunities.find({"customer_id": customer_id}, projection={"_id": 1})]

    # --- targets -------------------------------------------------------------------------------

    async def target(self, target_id: str) -> Document | None:
        return await self.targets.find_one({"_id": target_id})

    async def targets_where(self, query: Document) -> list[Document]:
        return [d async for d in self.targets.find(query, projection={"outbox": 0})]
