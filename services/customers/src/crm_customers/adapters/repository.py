"""The customers collection: indexes, the versioned store, and the queries list views make."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from crm_platform.availability import store_unavailable
from crm_platform.clock import Clock
from crm_platform.errors import Conflict, NotFound
from crm_platform.leases import release_in_background, release_soon
from crm_platform.listing import count
from crm_platform.store import VersionedStore

Document = dict[str, Any]

INDEXES = [
    # "First entered owns": sparse unique keys, present only on active customers.
    IndexModel([("unique_name", ASCENDING)], name="unique_name", unique=True, sparse=True),
    IndexModel([("unique_uscc", ASCENDING)], name="unique_uscc", unique=True, sparse=True),
    # Duplicate checks and search.
    # Single-field indexes are named idx_<field>: the embedded store uses one only when its
    # name ends in _<field> (a naming choice that costs nothing on MongoDB).
    IndexModel([("name_normalised", ASCENDING)], name="idx_name_normalised"),
    IndexModel([("name_grams", ASCENDING)], name="idx_name_grams"),
    IndexModel([("merged_names", ASCENDING)], name="idx_merged_names"),
    IndexModel([("match_phones", ASCENDING)], name="idx_match_phones"),
    IndexModel([("match_emails", ASCENDING)], name="idx_match_emails"),
    IndexModel([("uscc", ASCENDING)], name="idx_uscc"),
    IndexModel([("owner_id", ASCENDING)], name="idx_owner_id"),
    IndexModel([("department_path", ASCENDING)], name="idx_department_path"),
    IndexModel([("in_pool", ASCENDING)], name="idx_in_pool"),
    # List views: the visibility prefix (owner, department, pool) plus the default sort.
    IndexModel([("status", ASCENDING), ("s.updated_at", DESCENDING)], name="status_updated"),
    IndexModel(
        [("owner_id", ASCENDING), ("status", ASCENDING), ("s.updated_at", DESCENDING)], name="owner_status_updated"
    ),
    IndexModel(
        [("department_path", ASCENDING), ("status", ASCENDING), ("s.updated_at", DESCENDING)],
        name="dept_status_updated",
    ),
    IndexModel(
        [("in_pool", ASCENDING), ("status", ASCENDING), ("s.updated_at", DESCENDING)], name="pool_status_updated"
    ),
    IndexModel([("tags", ASCENDING)], name="idx_tags"),
    IndexModel([("s.last_followed_up_at", ASCENDING)], name="idx_s.last_followed_up_at"),
    IndexModel([("s.created_at", ASCENDING)], name="idx_s.created_at"),
    IndexModel([("s.updated_at", ASCENDING)], name="idx_s.updated_at"),
    IndexModel([("s.name", ASCENDING)], name="idx_s.name"),
    IndexModel([("industry", ASCENDING)], name="idx_industry"),
    IndexModel([("tier", ASCENDING)], name="idx_tier"),
    IndexModel([("lifecycle_stage", ASCENDING)], name="idx_lifecycle_stage"),
    IndexModel([("address.city", ASCENDING)], name="idx_address.city"),
]


class CustomerRepository:
    def __init__(self, db: AsyncDatabase[Document], clock: Clock, wake_relay: Any) -> None:
        self.collection: AsyncCollection[Document] = db["customers"]
        self.views: AsyncCollection[Document] = db["saved_views"]
        self.migrations: AsyncCollection[Document] = db["migrations"]
        self.owner_locks: AsyncCollection[Document] = db["owner_locks"]
        self._clock = clock
        # In-process queue in front of the lease, so waiters here do not poll the store.
        self._local_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self.store = VersionedStore(
            self.collection, clock, wake_relay=wake_relay, not_found=lambda i: NotFound(f"No customer with id {i}.")
        )

    async def ensure_indexes(self) -> None:
        await self.collection.create_indexes(INDEXES)

    async def upgrade_sort_keys(self, sort_keys: Callable[[Document], Document], version: int) -> int:
        """Rewrite the sort keys of documents stored with an older shape, once; returns how many.

        A marker in ``migrations`` records that it is done, so later starts skip it. Each stale
        document is replaced whole, guarded by its version and outbox revision like every
        other write (a document a change rewrote meanwhile already has the new keys): the
        embedded store's answers to ``{"s.v": {"$ne": 2}}``, to a projection of ``s.v`` and to
        update filters on a missing field proved unreliable on a large collection.
        """
        marker = f"sort_keys_v{version}"
        if await self.migrations.find_one({"_id": marker}) is not None:
            return 0
        upgraded = 0
        for _ in range(5):  # again for documents another writer replaced under us (the relay, a change)
            stale = 0
            batch: list[ReplaceOne[Document]] = []
            async for doc in self.collection.find({}):
                if (doc.get("s") or {}).get("v") == version or doc.get("status") not in ("active", "deleted"):
                    continue
                stale += 1
                guard: Document = {"_id": doc["_id"], "version": doc.get("version")}
                if "outbox_rev" in doc:
                    guard["outbox_rev"] = doc["outbox_rev"]
                batch.append(ReplaceOne(guard, {**doc, "s": sort_keys(doc)}))
                if len(batch) >= 500:
                    upgraded += (await self.collection.bulk_write(batch, ordered=False)).matched_count
                    batch = []
            if batch:
                upgraded += (await self.collection.bulk_write(batch, ordered=False)).matched_count
            if stale == 0:
                break
        with contextlib.suppress(DuplicateKeyError):  # another replica finished first
            await self.migrations.insert_one({"_id": marker, "documents": upgraded})
        return upgraded

    async def get(self, customer_id: str) -> Document | None:
        return await self.collection.find_one({"_id": customer_id})

    async def exact_matches(
        self,
        *,
        kind: str | None,
        name_normalised: str | None,
        uscc: str | None,
        phones: Sequence[str],
        emails: Sequence[str],
        exclude_id: str | None = None,
        limit: int = 20,
    ) -> list[Document]:
        """Customers (active or in the recycle bin) that share a key with the given values."""
        clauses: list[Document] = []
        if name_normalised and kind == "company":
            clauses.append({"name_normalised": name_normalised, "kind": "company"})
            # Names of duplicates merged into a customer. $in, not equality: the embedded store's
            # equality on an indexed array field can miss array elements.
            clauses.append({"merged_names": {"$in": [name_normalised]}, "kind": "company"})
        if uscc:
            clauses.append({"uscc": uscc})
        if phones:
            clauses.append({"match_phones": {"$in": list(phones)}})
        if emails:
            clauses.append({"match_emails": {"$in": list(emails)}})
        if not clauses:
            return []
        # One indexed query per key rather than one $or (which the embedded store scans).
        found: dict[str, Document] = {}
        for clause in clauses:
            query: Document = {**clause, "status": {"$in": ["active", "deleted"]}}
            if exclude_id:
                query["_id"] = {"$ne": exclude_id}
            async for doc in self.collection.find(query, projection=MATCH_PROJECTION).limit(limit):
                found.setdefault(doc["_id"], doc)
        return list(found.values())[:limit]

    async def gram_candidates(self, grams: Sequence[str], exclude_id: str | None, limit: int = 500) -> list[Document]:
        """Active customers sharing name bigrams with the candidate: the fuzzy check's shortlist.

        One ``$in`` over every bigram, cut at ``limit``. When that is cut (a common bigram such
        as 北京 or 科技 among 100k names), its arbitrary ``limit`` rows could leave the similar
        name out; a second query then asks for the bigrams that were rare among those rows only
        (a similar name shares the rare bigrams too), and its rows come first. Two queries:
        one per bigram cost about 100 ms each on the embedded store at 20k customers.
        """
        if not grams:
            return []
        query: Document = {"name_grams": {"$in": list(grams)}, "status": "active"}
        if exclude_id:
            query["_id"] = {"$ne": exclude_id}
        projection = {**MATCH_PROJECTION, "name_grams": 1}
        docs = [d async for d in self.collection.find(query, projection=projection).limit(limit)]
        if len(docs) < limit:
            return docs
        wanted = set(grams)
        seen = Counter(g for d in docs for g in d.get("name_grams") or [] if g in wanted)
        rare = [g for g in grams if seen[g] < len(docs) // 10]
        if not rare:
            return docs  # every bigram is common: the name is made of common words
        rarer = [
            d
            async for d in self.collection.find({**query, "name_grams": {"$in": rare}}, projection=projection).limit(
                limit
            )
        ]
        merged = {d["_id"]: d for d in rarer}
        for d in docs:
            merged.setdefault(d["_id"], d)
        return list(merged.values())

    async def active_count_for_owner(self, owner_id: str) -> int:
        return await count(self.collection, {"owner_id": owner_id, "status": "active"})

    @asynccontextmanager
    async def owner_lock(
        self, owner_id: str, lease_seconds: float = 10.0, wait_seconds: float = 10.0
    ) -> AsyncIterator[None]:
        """Hold one owner's lease while counting what they hold and giving them one more.

        Count-then-write is a race: concurrent creates or claims for one rep would all see
        room under the limit. A lease on a per-owner document (a conditional update, atomic
        on MongoDB and on the embedded store, and safe across replicas) serialises them; a
        crashed holder's lease simply expires.
        """
        local = self._local_locks.get(owner_id)
        if local is None:
            local = self._local_locks[owner_id] = asyncio.Lock()
        async with local, self._owner_lease(owner_id, lease_seconds, wait_seconds):
            yield

    @asynccontextmanager
    async def _owner_lease(self, owner_id: str, lease_seconds: float, wait_seconds: float) -> AsyncIterator[None]:
        token = uuid.uuid4().hex
        what = f"owner {owner_id}"

        async def release() -> None:
            await self.owner_locks.update_one(
                {"_id": owner_id, "token": token}, {"$set": {"until": 0.0, "token": None}}
            )

        try:
            await self.owner_locks.insert_one({"_id": owner_id, "until": 0.0, "token": None})
        except DuplicateKeyError:
            pass  # the owner's lock document exists already
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while True:
            now = self._clock.now().timestamp()
            try:
                result = await self.owner_locks.update_one(
                    {"_id": owner_id, "until": {"$lt": now}}, {"$set": {"until": now + lease_seconds, "token": token}}
                )
            except Exception as exc:
                if store_unavailable(exc):
                    # The store may have applied the update before the connection died: if the
                    # lease is ours, give it back once the store is back, not when it expires.
                    release_in_background(release, lease_seconds, what)
                raise
            if result.modified_count:
                break
            if loop.time() > deadline:
                raise Conflict(f"Another change for {owner_id} is in progress; retry in a moment.")
            await asyncio.sleep(0.005)
        try:
            yield
        finally:
            # If the store is down now, released in the background as soon as it is back.
            await release_soon(release, lease_seconds, what)

    def find(self, query: Document, sort: list[tuple[str, int]], limit: int) -> AsyncIterator[Document]:
        return self.collection.find(query, projection=LIST_PROJECTION).sort(sort).limit(limit)

    async def count(self, query: Document) -> int:
        return await count(self.collection, query)


#: What list views read: not the outbox nor the search grams.
LIST_PROJECTION = {"outbox": 0, "name_grams": 0}

MATCH_PROJECTION = {
    "_id": 1,
    "name": 1,
    "kind": 1,
    "uscc": 1,
    "name_normalised": 1,
    "merged_names": 1,
    "match_phones": 1,
    "match_emails": 1,
    "owner_id": 1,
    "department_id": 1,
    "department_path": 1,
    "in_pool": 1,
    "status": 1,
}
