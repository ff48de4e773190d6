"""The pipeline service's collections, their indexes, and the queries its views make.

Every aggregate (pipeline, opportunity, target) is written through a
:class:`VersionedStore`: state, version and outbox events in one guarded write.
``customers`` is the read copy of the customers service's customers.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from crm_pipeline.domain.opportunities import SORT_KEYS_VERSION, sort_keys
from crm_platform.clock import Clock
from crm_platform.customfield_store import CopyingStore, backfill_copies, copies_marker
from crm_platform.customfields import SORT_COPY_PREFIX
from crm_platform.errors import NotFound
from crm_platform.listing import or_branches
from crm_platform.sortkeys import upgrade_sort_keys
from crm_platform.store import VersionedStore

Document = dict[str, Any]

#: The sort keys every list view offers (the stored ``s.<key>``, see domain.opportunities.SORT_FIELDS).
SORT_KEYS = (
    "name",
    "amount",
    "weighted",
    "probability",
    "close_day",
    "created_at",
    "updated_at",
    "stage_entered_at",
    "status",
    "owner_id",
    "customer_id",
)
#: Each list's visibility prefix: an admin's (every visible one), a rep's (their own), a manager's
#: department subtree (the other branch of a manager's ``$or``). Every list filters hidden = false.
VISIBILITY_PREFIXES = {
    "hidden": [("hidden", ASCENDING)],
    "owner_hidden": [("owner_id", ASCENDING), ("hidden", ASCENDING)],
    "dept_hidden": [("department_path", ASCENDING), ("hidden", ASCENDING)],
}

OPPORTUNITY_INDEXES = [
    # List views: every sort behind every visibility prefix, so page N of a big list walks an
    # index in order instead of sorting every match (the cursor's tie branch is one tie group).
    *(
        IndexModel([*prefix, (f"s.{key}", ASCENDING)], name=f"{name}_{key}")
        for key in SORT_KEYS
        for name, prefix in VISIBILITY_PREFIXES.items()
    ),
    IndexModel([("pipeline_id", ASCENDING), ("stage_id", ASCENDING)], name="pipeline_stage"),
    # The funnel (cohort by creation day: its integer copy, see domain.opportunities.sort_keys).
    IndexModel([("pipeline_id", ASCENDING), ("s.created_day", ASCENDING)], name="pipeline_created_day"),
    # Single-field indexes are named idx_<field>: the embedded store uses one only when its name
    # ends in _<field> (a naming choice that costs nothing on MongoDB). List filters first.
    IndexModel([("owner_id", ASCENDING)], name="idx_owner_id"),
    IndexModel([("department_path", ASCENDING)], name="idx_department_path"),
    IndexModel([("customer_id", ASCENDING)], name="idx_customer_id"),
    IndexModel([("status", ASCENDING)], name="idx_status"),
    IndexModel([("pipeline_id", ASCENDING)], name="idx_pipeline_id"),
    IndexModel([("stage_id", ASCENDING)], name="idx_stage_id"),
    IndexModel([("pending_approval", ASCENDING)], name="idx_pending_approval"),
    IndexModel([("source_campaign", ASCENDING)], name="idx_source_campaign"),
    # The forecast (won day, expected close day), on the days' integer copies: a range on an ISO
    # date string is compared through datetime() on the embedded store, which no index serves.
    IndexModel([("status", ASCENDING), ("s.won_day", ASCENDING)], name="status_won_day"),
    IndexModel([("status", ASCENDING), ("s.close_day", ASCENDING)], name="status_close_day"),
    # Every list filters on hidden = false: without an index named _hidden the embedded store
    # turns that equality into an array-aware OR that no index serves, and scans.
    IndexModel([("hidden", ASCENDING)], name="idx_hidden"),
]
#: Earlier names of indexes: MongoDB refuses the same keys under a second name, so they go first;
#: the single-field sort indexes and the updated_at ones of a status prefix no list filter uses
#: (every list filters hidden = false: the compound ones above serve them) only cost writes.
LEGACY_OPPORTUNITY_INDEXES = (
    "customer",
    "pending_approval",
    "won_on",
    "expected_close_date",
    "sort_close",
    "sort_amount",
    "sort_name",
    "sort_created",
    "hidden_updated",
    "owner_updated",
    "dept_updated",
    "status_updated",
    *(f"idx_s.{key}" for key in SORT_KEYS),
    # Sort keys version 3: days as integers (s.close_day, s.won_day, s.created_day) replaced the
    # ISO date strings the expected-close sort, the forecast and the funnel ranged over.
    *(f"{name}_expected_close_date" for name in VISIBILITY_PREFIXES),
    "idx_s.expected_close_date",
    "idx_won_on",
    "idx_expected_close_date",
    "pipeline_created_on",
)


def custom_field_indexes(field: str) -> list[IndexModel]:
    """The indexes of a filterable custom field of opportunities: its value behind each visibility
    prefix, then the default sort (``-updated_at``) and the tie-breaker, so ``custom.<key>=<value>``
    in any scope is an equality search walked in list order (not the scope's list index walked and
    every row tested); the value alone too, for a filter under another sort. Made when the field
    becomes filterable, dropped when the flag is cleared or the field archived. ``field``: where
    the filter looks (``custom.<key>``, or a copy ``s.cfq_<key>``)."""
    key = field.removeprefix("custom.").removeprefix("s.")
    return [
        *(
            IndexModel(
                [*prefix, (field, ASCENDING), ("s.updated_at", ASCENDING), ("s.id", ASCENDING)], name=f"{name}_cf_{key}"
            )
            for name, prefix in VISIBILITY_PREFIXES.items()
        ),
        IndexModel([(field, ASCENDING)], name=f"idx_{field}"),
    ]


def custom_sort_indexes(field: str) -> list[IndexModel]:
    """The indexes of a sortable custom field of opportunities: its sort copy behind each
    visibility prefix, the id's copy last (so ``sort=custom.<key>`` either way walks an index in
    order, its ties included: most opportunities may hold no value), and the copy alone (a
    cursor's tie branch is an equality on it: named ``idx_<field>`` or it scans). Made when the
    field becomes sortable, dropped when the flag is cleared or the field archived. ``field``: the
    sort copy, ``s.cf_<key>``."""
    key = field.removeprefix(f"s.{SORT_COPY_PREFIX}")
    return [
        *(
            IndexModel([*prefix, (field, ASCENDING), ("s.id", ASCENDING)], name=f"{name}_cfs_{key}_id")
            for name, prefix in VISIBILITY_PREFIXES.items()
        ),
        IndexModel([(field, ASCENDING)], name=f"idx_{field}"),
    ]


TARGET_INDEXES = [
    IndexModel([("scope", ASCENDING), ("scope_id", ASCENDING), ("year", ASCENDING)], name="scope_year"),
    IndexModel([("department_path", ASCENDING), ("year", ASCENDING)], name="dept_year"),
    # The list of a year's targets filters by year equality plus a path prefix (a regex): the
    # embedded store serves the equality only from an index named _<field>.
    IndexModel([("year", ASCENDING)], name="idx_year"),
    # A target's look-up (scope, scope_id, year, currency): scope_year serves it once each field
    # compared by equality has its idx_<field> (else an array test of every row the index finds).
    *(IndexModel([(f, ASCENDING)], name=f"idx_{f}") for f in ("scope", "scope_id", "currency")),
]

PIPELINE_INDEXES = [
    IndexModel([("is_default", ASCENDING), ("default_since", DESCENDING)], name="default"),
    # The default pipeline is looked up by equality on is_default on every create: the embedded
    # store serves that equality only from an index named _<field>.
    IndexModel([("is_default", ASCENDING)], name="idx_is_default"),
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
        self.migrations: AsyncCollection[Document] = db["migrations"]
        self.opportunity_store = CopyingStore(
            self.opportunities,
            clock,
            wake_relay=wake_relay,
            not_found=lambda i: NotFound(f"No opportunity with id {i}."),
        )
        self.target_store = VersionedStore(
            self.targets, clock, wake_relay=wake_relay, not_found=lambda i: NotFound(f"No target with id {i}.")
        )

    async def ensure_indexes(self) -> None:
        await drop_indexes_named(self.opportunities, LEGACY_OPPORTUNITY_INDEXES)
        await self.opportunities.create_indexes(OPPORTUNITY_INDEXES)
        # Once per database: opportunities stored with older sort keys get the current ones, and
        # the custom fields' copies with them.
        add_copies = await self.opportunity_store.copier()
        await upgrade_sort_keys(
            self.opportunities, lambda doc: add_copies({**doc, "s": sort_keys(doc)})["s"], SORT_KEYS_VERSION
        )
        await self.targets.create_indexes(TARGET_INDEXES)
        await self.pipelines.create_indexes(PIPELINE_INDEXES)

    async def backfill_copies(self, definition: Document, again: bool = False, batch_size: int = 500) -> int:
        """The copies of a custom field just flagged (:func:`crm_platform.customfield_store.backfill_copies`)
        on every opportunity whose copies are missing or stale; returns how many were rewritten."""
        return await backfill_copies(
            self.opportunities,
            self.migrations,
            definition,
            copies_marker(definition),
            again=again,
            batch_size=batch_size,
            projection={"outbox": 0, "stage_history": 0},
        )

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

    async def pipelines_by_id(self, pipeline_ids: set[str]) -> dict[str, Document]:
        """The pipelines a page of opportunities names, by _id (a lookup, not a walk of every pipeline)."""
        if not pipeline_ids:
            return {}
        found = self.pipelines.find({"_id": {"$in": sorted(pipeline_ids)}}, projection={"outbox": 0})
        return {d["_id"]: d async for d in found}

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

    async def opportunities_where(self, query: Document, projection: Document | None = None) -> list[Document]:
        """Every match; a top-level ``$or`` (visibility) runs as one indexed query per alternative."""
        return await find_all(self.opportunities, query, projection or {"outbox": 0})

    async def opportunity_ids_of_customer(self, customer_id: str) -> list[str]:
        return [d["_id"] async for d in self.opportunities.find({"customer_id": customer_id}, projection={"_id": 1})]

    # --- targets -------------------------------------------------------------------------------

    async def target(self, target_id: str) -> Document | None:
        return await self.targets.find_one({"_id": target_id})

    async def targets_where(self, query: Document) -> list[Document]:
        return await find_all(self.targets, query, {"outbox": 0})


async def find_all(
    collection: AsyncCollection[Document], query: Document, projection: Document | None = None
) -> list[Document]:
    """Every match of ``query``, unsorted, each ``$or`` alternative as its own query.

    The embedded store never uses an index for an ``$or`` (it scans every document);
    one query per alternative can, and the union (by id) is the same set.
    """
    branches = or_branches(query) or [query]
    if len(branches) == 1:
        return [d async for d in collection.find(branches[0], projection=projection)]
    found: dict[Any, Document] = {}
    for branch in branches:
        async for doc in collection.find(branch, projection=projection):
            found.setdefault(doc["_id"], doc)
    return list(found.values())


async def drop_indexes_named(collection: AsyncCollection[Document], names: tuple[str, ...]) -> None:
    """Drop those of ``names`` the collection has (renamed indexes of an existing database)."""
    present = await collection.index_information()
    for name in names:
        if name in present:
            await collection.drop_index(name)
