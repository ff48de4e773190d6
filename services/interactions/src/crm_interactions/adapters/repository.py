"""The interactions service's collections, their indexes, and the queries its views make.

Interactions, tasks and feedback are aggregates written only through a
:class:`VersionedStore` (state, version and outbox events in one guarded write).
``customers``, ``opportunities`` and ``directory_users``/``directory_departments`` are
read copies of other services' aggregates, fed by their events.
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

INTERACTION_INDEXES = [
    # One email, one interaction: only emails with a Message-ID have the key (sparse).
    IndexModel([("message_key", ASCENDING)], name="message_key", unique=True, sparse=True),
    # A customer's history in time order, and the filters a rep applies to it.
    IndexModel([("customer_id", ASCENDING), ("occurred_at", DESCENDING)], name="customer_occurred"),
    IndexModel([("author_id", ASCENDING), ("occurred_at", DESCENDING)], name="author_occurred"),
    IndexModel([("author_department_path", ASCENDING), ("occurred_at", DESCENDING)], name="dept_occurred"),
    IndexModel([("occurred_at", DESCENDING)], name="occurred"),
    IndexModel([("opportunity_id", ASCENDING)], name="opportunity"),
    IndexModel([("contact_ids", ASCENDING)], name="contacts"),
]

TASK_INDEXES = [
    # The scheduler's query: armed notices whose time has come.
    IndexModel([("next_fire_at", ASCENDING)], name="next_fire_at"),
    IndexModel([("assignee_id", ASCENDING), ("status", ASCENDING), ("due_at", ASCENDING)], name="assignee_due"),
    IndexModel(
        [("assignee_department_path", ASCENDING), ("status", ASCENDING), ("due_at", ASCENDING)], name="dept_due"
    ),
    IndexModel([("created_by", ASCENDING), ("due_at", ASCENDING)], name="creator_due"),
    IndexModel([("customer_id", ASCENDING)], name="customer"),
]

FEEDBACK_INDEXES = [
    IndexModel([("customer_id", ASCENDING), ("opened_at", DESCENDING)], name="customer_opened"),
    IndexModel([("handler_id", ASCENDING), ("status", ASCENDING)], name="handler_status"),
    IndexModel([("reported_by", ASCENDING), ("opened_at", DESCENDING)], name="reporter_opened"),
    IndexModel([("status", ASCENDING), ("opened_at", DESCENDING)], name="status_opened"),
    IndexModel([("reporter_department_path", ASCENDING)], name="reporter_dept"),
    IndexModel([("handler_department_path", ASCENDING)], name="handler_dept"),
]

LIST_PROJECTION = {"outbox": 0}


class Repository:
    def __init__(self, db: AsyncDatabase[Document], clock: Clock, wake_relay: Any) -> None:
        self.interactions: AsyncCollection[Document] = db["interactions"]
        self.tasks: AsyncCollection[Document] = db["tasks"]
        self.feedback: AsyncCollection[Document] = db["feedback"]
        # Read copies of other services' aggregates.
        self.customers: AsyncCollection[Document] = db["customers"]
        self.opportunities: AsyncCollection[Document] = db["opportunities"]
        self.directory_users: AsyncCollection[Document] = db["directory_users"]
        self.directory_departments: AsyncCollection[Document] = db["directory_departments"]
        self.interaction_store = VersionedStore(
            self.interactions,
            clock,
            wake_relay=wake_relay,
            not_found=lambda i: NotFound(f"No interaction with id {i}."),
        )
        self.task_store = VersionedStore(
            self.tasks, clock, wake_relay=wake_relay, not_found=lambda i: NotFound(f"No task with id {i}.")
        )
        self.feedback_store = VersionedStore(
            self.feedback, clock, wake_relay=wake_relay, not_found=lambda i: NotFound(f"No feedback with id {i}.")
        )

    async def ensure_indexes(self) -> None:
        await self.interactions.create_indexes(INTERACTION_INDEXES)
        await self.tasks.create_indexes(TASK_INDEXES)
        await self.feedback.create_indexes(FEEDBACK_INDEXES)

    async def interaction_by_message(self, message_id: str) -> Document | None:
        return await self.interactions.find_one({"message_key": message_id})

    def find(
        self, collection: AsyncCollection[Document], query: Document, sort: list[tuple[str, int]], limit: int
    ) -> AsyncIterator[Document]:
        return collection.find(query, projection=LIST_PROJECTION).sort(sort).limit(limit)

    async def ids_of_customer(self, collection: AsyncCollection[Document], customer_id: str) -> list[str]:
        return [d["_id"] async for d in collection.find({"customer_id": customer_id}, projection={"_id": 1})]

    async def customer_ids_owned_by(self, user_id: str, limit: int = 2000) -> list[str]:
        """Customers the read copy says this user owns (a rep holds a few hundred at most)."""
        cursor = self.customers.find({"owner_id": user_id, "status": "active"}, projection={"_id": 1}).limit(limit)
        return [d["_id"] async for d in cursor]

    async def due_tasks(self, now: Any, limit: int) -> list[str]:
        cursor = (
            self.tasks.find({"next_fire_at": {"$lte": now}}, projection={"_id": 1})
            .sort([("next_fire_at", ASCENDING)])
            .limit(limit)
        )
        return [d["_id"] async for d in cursor]
