"""The audit log's store: one collection of entries, written once, read by index, purged by range.

Nothing here updates an entry. An entry is inserted with ``_id`` = the event id, so a repeated
delivery fails on the key and changes nothing; the only delete is the retention purge, by a
range on the sort key ``k`` (oldest first, in batches).

Every query is one equality on an indexed field (or none) plus a range on ``k``, sorted on
``k``: an index ``(field, k)`` serves it on MongoDB and on the embedded store alike, newest
first by walking the index backwards (pinned by tests/integration/test_query_plans.py).
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

Document = dict[str, Any]

#: The fields a search filters on by equality; each has an index (field, k).
FILTER_FIELDS = ("actor_id", "action", "target_type", "target_id", "client_address")

ENTRY_INDEXES = [
    IndexModel([("k", ASCENDING)], name="idx_k"),
    *(IndexModel([(f, ASCENDING), ("k", ASCENDING)], name=f"{f}_k") for f in FILTER_FIELDS),
    # The embedded store compares a field by equality as a scalar (an index lookup) only when an
    # index is named after it, else it also tests array containment, which no index serves.
    *(IndexModel([(f, ASCENDING)], name=f"idx_{f}") for f in FILTER_FIELDS),
]


class AuditRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.entries: AsyncCollection[Document] = db["entries"]
        # The directory's users as its events describe them: the actor's name at the time.
        self.users: AsyncCollection[Document] = db["directory_users"]
        self.departments: AsyncCollection[Document] = db["directory_departments"]

    async def ensure_indexes(self) -> None:
        await self.entries.create_indexes(ENTRY_INDEXES)

    async def insert(self, doc: Document) -> bool:
        """Keep a new entry; False when an entry with this id (the same event) is stored already."""
        try:
            await self.entries.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def get(self, entry_id: str) -> Document | None:
        return await self.entries.find_one({"_id": entry_id})

    async def actor_name(self, user_id: str) -> str | None:
        user = await self.users.find_one({"_id": user_id}, projection={"name": 1})
        return str(user["name"]) if user and user.get("name") else None

    async def newest_first(self, query: Document, limit: int) -> list[Document]:
        return [doc async for doc in self.entries.find(query).sort([("k", DESCENDING)]).limit(limit)]

    async def purge_before(self, key: str, batch_size: int) -> int:
        """Delete up to ``batch_size`` of the oldest entries whose key is below ``key``: one index
        range for their ids, then one delete by ``_id``. Two replicas purging at once delete the
        same rows twice, which deletes nothing the second time."""
        ids = [
            doc["_id"]
            async for doc in self.entries.find({"k": {"$lt": key}}, projection={"_id": 1})
            .sort([("k", ASCENDING)])
            .limit(batch_size)
        ]
        if not ids:
            return 0
        result = await self.entries.delete_many({"_id": {"$in": ids}})
        return int(result.deleted_count)
