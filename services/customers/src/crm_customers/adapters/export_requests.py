"""Export approval's storage: the one policy document and the export requests (each an outbox).

Every query here is an index lookup on MongoDB and on the embedded store (pinned by
``tests/integration/test_query_plans.py``): documents by ``_id``, a requester's own requests on
``(requester_id, at_ms)``, an approver's pending ones as one range on ``pending_path`` (sparse:
only pending requests carry it).
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from crm_platform.clock import Clock
from crm_platform.errors import NotFound
from crm_platform.retention import ensure_record_index
from crm_platform.store import VersionedStore

Document = dict[str, Any]
HIDDEN = {"outbox": 0}
REQUEST_INDEXES = [
    IndexModel([("pending_path", ASCENDING)], name="idx_pending_path", sparse=True),
    IndexModel([("requester_id", ASCENDING), ("at_ms", DESCENDING)], name="idx_requester_id_at_ms"),
    # The requester's equality is then a scalar comparison that index serves (not a walk of the whole
    # index testing each row's requester_id as an array).
    IndexModel([("requester_id", ASCENDING)], name="idx_requester_id"),
]


class ExportApprovalStore:
    def __init__(self, db: AsyncDatabase[Document], clock: Clock, wake_relay: Any) -> None:
        self.policies: AsyncCollection[Document] = db["export_policy"]
        self.requests: AsyncCollection[Document] = db["export_requests"]
        self.policy_store = VersionedStore(self.policies, clock, wake_relay=wake_relay)
        self.request_store = VersionedStore(
            self.requests, clock, wake_relay=wake_relay, not_found=lambda i: NotFound(f"No export request with id {i}.")
        )

    async def ensure_indexes(self, policy_id: str) -> None:
        await self.requests.create_indexes(REQUEST_INDEXES)
        await ensure_record_index(self.requests)  # the source records' retention purge walks at_ms
        try:  # the policy document, off, so that every change is a versioned write of it
            await self.policies.insert_one(
                VersionedStore.first_state({"_id": policy_id, "approval_above_rows": None, "history": []})
            )
        except DuplicateKeyError:
            pass

    async def policy(self, policy_id: str) -> Document | None:
        return await self.policies.find_one({"_id": policy_id}, projection=HIDDEN)

    async def request(self, request_id: str) -> Document | None:
        return await self.requests.find_one({"_id": request_id}, projection=HIDDEN)

    async def by_requester(self, user_id: str, limit: int) -> list[Document]:
        """A requester's requests, newest first."""
        cursor = (
            self.requests.find({"requester_id": user_id}, projection=HIDDEN)
            .sort([("requester_id", ASCENDING), ("at_ms", DESCENDING)])
            .limit(limit)
        )
        return [doc async for doc in cursor]

    async def pending_in(self, paths: dict[str, str], limit: int) -> list[Document]:
        """Pending requests whose ``pending_path`` lies in the range ``paths``, in path order."""
        cursor = (
            self.requests.find({"pending_path": paths}, projection=HIDDEN)
            .sort([("pending_path", ASCENDING)])
            .limit(limit)
        )
        return [doc async for doc in cursor]
