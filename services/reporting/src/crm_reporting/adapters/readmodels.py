"""The reporting read models in MongoDB, one *generation* at a time.

Every collection name carries the generation (``g3_facts``): a rebuild fills a new
generation from the topics while reports keep reading the active one, then the
``meta`` document switches to it and the old one is dropped. Two kinds of data:

- states: the current copy of each aggregate (customer, opportunity, interaction,
  task, pipeline, target, user, department), written whole by ``apply_versioned``;
- facts: one document per event (``_id`` = event id, inserted once, duplicates
  ignored): the stage moves, field changes, merges and the timeline;
- rollups (``roll_*``): the counters the reports read (see
  ``adapters/rollups.py``); part of the generation, so a rebuild builds them afresh.

Times used in queries are stored as integer epoch milliseconds (``t``, ``at``,
``*_ms``): the embedded store compares ints fast and stores datetimes set by some
operators as strings.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from crm_platform.readmodels.directory import DirectoryReadModel

Document = dict[str, Any]
META_ID = "active_generation"
# meta documents ``references-tracked:<generation>``: that generation was filled from its start
# by a projection that leaves a placeholder customer when something refers to a customer it does
# not know yet, so a customer created with no copy before has nothing to gather (see
# Projection._customer_state). A generation built before that keeps the full derivation.
TRACKED_PREFIX = "references-tracked:"
# The same document's ``rollup_format``: how that generation's rollups are kept. 2: the deals'
# amounts per currency (``amt:<stage>:<currency>``…; see application/contributions.py). A
# generation without it (format 1) added every currency up: its funnel and forecast read only the
# amounts of opportunities changed since (each moves its contribution to the new counters) until
# `crm-reporting rebuild` replays the topics into a new generation.
ROLLUP_FORMAT = 2
STATE_NAMES = ("customers", "opportunities", "interactions", "tasks", "pipelines", "targets")


def _index(field: str) -> IndexModel:
    # The embedded store only uses a single-field index whose name ends in _<field>.
    return IndexModel([(field, ASCENDING)], name=f"idx_{field}")


def _pair(*fields: str) -> IndexModel:
    # A report's equality (currency, status, owner…) and the range or equality it is read by: the
    # embedded store, with no statistics, would otherwise pick a lone idx_<field> of the equality
    # (every CNY contract ever) over the period's range. An own scope's owner goes first where the
    # report is read by it too (a rep's stale customers, overdue tasks): not the whole company's.
    return IndexModel([(f, ASCENDING) for f in fields], name="k_" + "_".join(fields))


# Every field a report compares by equality has its idx_<field> (else the embedded store compiles
# the equality as an array test of each row its index walks), with a compound index beside it where
# that field alone is not selective (see _pair).
# Few indexes on purpose: each one costs ~0.3 ms per write on the embedded store, and the
# projection writes twice per event (measured on 1,000 mixed events: 190 events/s with an index per
# filter field, 269 with these).
INDEXES: dict[str, list[IndexModel]] = {
    "facts": [_index(f) for f in ("customer_id", "type")],
    "customers": [_index(f) for f in ("owner_id", "department_path", "merged_into", "touch_ms", "status")]
    + [_pair("status", "touch_ms"), _pair("owner_id", "status", "touch_ms")],
    "opportunities": [_index(f) for f in ("owner_id", "pipeline_id")],
    "interactions": [_index(f) for f in ("customer_id", "author_id", "occurred_ms")],
    "tasks": [_index(f) for f in ("assignee_id", "due_ms", "status")]
    + [_pair("status", "due_ms"), _pair("assignee_id", "status", "due_ms")],
    "pipelines": [],
    "targets": [_index(f) for f in ("period",)],
    # Rollups (application/contributions.py): customers per (field, value, owner, department);
    # deals per (pipeline, owner, department, calendar day); activity, quality and stage
    # entries per (owner, department, UTC day).
    "roll_customers": [_index(f) for f in ("field", "owner_id")] + [_pair("field", "owner_id")],
    "roll_deals": [_index(f) for f in ("day", "owner_id", "pipeline_id")] + [_pair("pipeline_id", "day")],
    "roll_time": [_index(f) for f in ("day", "owner_id")] + [_pair("owner_id", "day")],
    # Leads and campaigns (application/leadfigures.py): leads by creation, opportunities by lead.
    "leads": [_index(f) for f in ("created_ms", "owner_id", "campaign_id", "source")] + [_pair("source", "created_ms")],
    "campaigns": [],
    "lead_opps": [_index("lead_id")],
    # Contracts, receivables and tickets (application/salesfigures.py).
    "sales_contracts": [_index(f) for f in ("signed_day", "currency", "owner_id")] + [_pair("currency", "signed_day")],
    "sales_instalments": [_index(f) for f in ("contract_id", "open", "due_day", "currency", "live", "owner_id")]
    + [_pair("currency", "live", "due_day"), _pair("open", "currency")],
    "sales_payments": [_index(f) for f in ("received_day", "currency", "owner_id")]
    + [_pair("currency", "received_day")],
    "sales_ltv": [_index(f) for f in ("rank", "owner_id")] + [_pair("owner_id", "rank")],
    "sales_tickets": [_index(f) for f in ("opened_ms", "owner_id")] + [_pair("owner_id", "opened_ms")],
}


@dataclass
class ReadModels:
    """The collections of one generation."""

    db: AsyncDatabase[Document]
    generation: int
    # Something that refers to an unknown customer leaves a placeholder (see TRACKED_PREFIX).
    tracks_references: bool = False

    def _c(self, name: str) -> AsyncCollection[Document]:
        return self.db[f"g{self.generation}_{name}"]

    @property
    def facts(self) -> AsyncCollection[Document]:
        return self._c("facts")

    @property
    def customers(self) -> AsyncCollection[Document]:
        return self._c("customers")

    @property
    def opportunities(self) -> AsyncCollection[Document]:
        return self._c("opportunities")

    @property
    def interactions(self) -> AsyncCollection[Document]:
        return self._c("interactions")

    @property
    def tasks(self) -> AsyncCollection[Document]:
        return self._c("tasks")

    @property
    def pipelines(self) -> AsyncCollection[Document]:
        return self._c("pipelines")

    @property
    def targets(self) -> AsyncCollection[Document]:
        return self._c("targets")

    def collection(self, name: str) -> AsyncCollection[Document]:
        """A collection of this generation by name (the rollups)."""
        return self._c(name)

    @property
    def directory(self) -> DirectoryReadModel:
        return DirectoryReadModel(self._c("users"), self._c("departments"))

    async def ensure_indexes(self) -> None:
        for name, indexes in INDEXES.items():
            if indexes:
                await self._c(name).create_indexes(indexes)
        await self.directory.ensure_indexes()

    async def drop(self) -> None:
        for name in (*INDEXES, "users", "departments"):
            await self._c(name).drop()

    async def without_rollups(self) -> bool:
        """Customers but no customer rollups: a generation built by a version before the rollups."""
        if await self._c("roll_customers").find_one({}, {"_id": 1}) is not None:
            return False
        return await self.customers.find_one({"status": "active"}, {"_id": 1}) is not None

    async def add_fact(self, fact: Document) -> bool:
        """Store a fact once per event id; a repeated event is a no-op (False)."""
        try:
            await self.facts.insert_one(fact)
        except DuplicateKeyError:
            return False
        return True

    async def add_facts(self, facts: list[Document]) -> int:
        if not facts:
            return 0
        try:
            result = await self.facts.insert_many(facts, ordered=False)
            return len(result.inserted_ids)
        except BulkWriteError as exc:
            return int(exc.details.get("nInserted", 0))


class Generations:
    """Which generation of read models is active; cached, re-read at most every ``refresh`` seconds."""

    def __init__(self, db: AsyncDatabase[Document], refresh: float = 1.0, pinned: int | None = None) -> None:
        self.db = db
        self.meta: AsyncCollection[Document] = db["meta"]
        self._refresh = refresh
        self._pinned = pinned
        self._cached: int | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()
        self._tracked: dict[int, bool] = {}  # per generation, fixed when the generation is made

    async def active(self) -> int:
        if self._pinned is not None:
            return self._pinned
        if self._cached is not None and time.monotonic() - self._read_at < self._refresh:
            return self._cached
        async with self._lock:
            doc = await self.meta.find_one({"_id": META_ID})
            if doc is None:
                # A store without read models: generation 1 tracks references from its start
                # (marked before it becomes active, so no projection writes into it untracked).
                await self._mark_tracked(1)
                try:
                    await self.meta.insert_one({"_id": META_ID, "generation": 1, "previous": 0})
                except DuplicateKeyError:
                    pass
                doc = await self.meta.find_one({"_id": META_ID})
            assert doc is not None
            self._cached = int(doc["generation"])
            self._read_at = time.monotonic()
            return self._cached

    async def current(self) -> ReadModels:
        generation = await self.active()
        return ReadModels(self.db, generation, await self.tracks_references(generation))

    async def tracks_references(self, generation: int) -> bool:
        if generation not in self._tracked:
            marker = await self.meta.find_one({"_id": f"{TRACKED_PREFIX}{generation}"}, {"_id": 1})
            self._tracked[generation] = marker is not None
        return self._tracked[generation]

    async def _mark_tracked(self, generation: int) -> None:
        await self.meta.update_one(
            {"_id": f"{TRACKED_PREFIX}{generation}"},
            {"$set": {"generation": generation, "rollup_format": ROLLUP_FORMAT}},
            upsert=True,
        )

    async def rollup_format(self, generation: int) -> int:
        """How ``generation``'s rollups are kept (``ROLLUP_FORMAT`` when this version filled it from empty)."""
        marker = await self.meta.find_one({"_id": f"{TRACKED_PREFIX}{generation}"}, {"rollup_format": 1})
        return int((marker or {}).get("rollup_format") or 1)

    async def next_generation(self) -> int:
        """Reserve a new generation number (a counter, so two rebuilds never share one)."""
        doc = await self.meta.find_one_and_update(
            {"_id": "generation_counter"}, {"$inc": {"value": 1}}, upsert=True, return_document=True
        )
        if doc is None:  # the embedded store returns None on the upsert that created it
            doc = await self.meta.find_one({"_id": "generation_counter"})
        assert doc is not None
        generation = max(int(doc["value"]), await self.active()) + 1
        await self._mark_tracked(generation)  # built from empty by this version
        return generation

    async def switch(self, generation: int) -> int:
        """Make ``generation`` the active one; returns the previous one."""
        previous = await self.active()
        await self.meta.replace_one(
            {"_id": META_ID}, {"_id": META_ID, "generation": generation, "previous": previous}, upsert=True
        )
        self._cached, self._read_at = generation, time.monotonic()
        return previous

    def pin(self, generation: int) -> None:
        self._pinned = generation
