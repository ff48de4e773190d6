"""The interactions service's collections, their indexes, and the queries its views make.

Interactions, tasks and feedback are aggregates written only through a
:class:`VersionedStore` (state, version and outbox events in one guarded write).
``customers``, ``opportunities`` and ``directory_users``/``directory_departments`` are
read copies of other services' aggregates, fed by their events.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from crm_interactions.domain import feedback as feedback_rules
from crm_interactions.domain import interactions as interaction_rules
from crm_interactions.domain import tasks as task_rules
from crm_platform.clock import Clock
from crm_platform.customfield_store import CopyingStore, backfill_copies, copies_marker
from crm_platform.customfields import SORT_COPY_PREFIX, FieldSet
from crm_platform.errors import NotFound
from crm_platform.listing import or_branches
from crm_platform.outbox import REV
from crm_platform.sortkeys import epoch_ms, upgrade_sort_keys

Document = dict[str, Any]
#: A module's custom field definitions as writes see them (set by the service: the definitions
#: live in crm_platform.customfield_store.CustomFields, made after the repository).
FieldSets = Callable[[str], Awaitable[FieldSet]]


def _sort_indexes(prefixes: dict[str, list[tuple[str, int]]], keys: tuple[str, ...]) -> list[IndexModel]:
    """An index per sort key (``s.<key>``) behind each visibility prefix of a list, so page N of a
    big list walks an index in order instead of sorting every match."""
    return [
        IndexModel([*prefix, (f"s.{key}", ASCENDING)], name=f"{name}_{key}" if name else f"s_{key}")
        for key in keys
        for name, prefix in prefixes.items()
    ]


#: A record's customer's owner as the customers read copy says (None: in the pool, or no customer),
#: kept on interactions and feedback so "the records of my customers" is one equality an index
#: serves, whatever the number of customers (see :meth:`Repository.follow_customer_owner`).
CUSTOMER_OWNER = "customer_owner_id"
#: The ``migrations`` marker of :meth:`Repository.fill_customer_owners`.
OWNERS_MARKER = "customer_owner_id-v1"
#: How many times :meth:`Repository.follow_customer_owner` goes again while the owner keeps changing
#: under it (each change runs its own follow after it, so giving up after these is safe).
OWNER_ROUNDS = 5

#: Each list's prefixes (the status and hidden filters every list page has, behind the
#: visibility alternatives' fields), as the list indexes below have them.
INTERACTION_PREFIXES = {
    "active": [("status", ASCENDING), ("hidden", ASCENDING)],
    "customer_active": [("customer_id", ASCENDING), ("status", ASCENDING), ("hidden", ASCENDING)],
    "author_active": [("author_id", ASCENDING), ("status", ASCENDING), ("hidden", ASCENDING)],
    "dept_active": [("author_department_path", ASCENDING), ("status", ASCENDING), ("hidden", ASCENDING)],
    "owner_active": [(CUSTOMER_OWNER, ASCENDING), ("status", ASCENDING), ("hidden", ASCENDING)],
}
TASK_PREFIXES = {
    "open": [("hidden", ASCENDING), ("status", ASCENDING)],
    "assignee_open": [("assignee_id", ASCENDING), ("hidden", ASCENDING), ("status", ASCENDING)],
    "creator_open": [("created_by", ASCENDING), ("hidden", ASCENDING), ("status", ASCENDING)],
    "dept_open": [("assignee_department_path", ASCENDING), ("hidden", ASCENDING), ("status", ASCENDING)],
}
FEEDBACK_PREFIXES = {
    "visible": [("hidden", ASCENDING)],
    "customer_visible": [("customer_id", ASCENDING), ("hidden", ASCENDING)],
    "reporter_visible": [("reported_by", ASCENDING), ("hidden", ASCENDING)],
    "handler_visible": [("handler_id", ASCENDING), ("hidden", ASCENDING)],
    "reporter_dept_visible": [("reporter_department_path", ASCENDING), ("hidden", ASCENDING)],
    "handler_dept_visible": [("handler_department_path", ASCENDING), ("hidden", ASCENDING)],
    "owner_visible": [(CUSTOMER_OWNER, ASCENDING), ("hidden", ASCENDING)],
}


# Single-field indexes are named idx_<field>: the embedded store uses one only when its name
# ends in _<field> (a naming choice that costs nothing on MongoDB). List sort fields are never null.
INTERACTION_INDEXES = [
    # One email, one interaction: only emails with a Message-ID have the key (sparse).
    IndexModel([("message_key", ASCENDING)], name="message_key", unique=True, sparse=True),
    # Lists (a customer's history, one's own, a team's, everything) filter on status and hidden.
    *_sort_indexes(INTERACTION_PREFIXES, ("occurred_at", "recorded_at")),
    IndexModel([("customer_id", ASCENDING)], name="idx_customer_id"),
    IndexModel([(CUSTOMER_OWNER, ASCENDING)], name=f"idx_{CUSTOMER_OWNER}"),
    IndexModel([("author_id", ASCENDING)], name="idx_author_id"),
    IndexModel([("author_department_path", ASCENDING)], name="idx_author_department_path"),
    IndexModel([("occurred_at", DESCENDING)], name="idx_occurred_at"),
    IndexModel([("channel", ASCENDING)], name="idx_channel"),
    IndexModel([("opportunity_id", ASCENDING)], name="idx_opportunity_id"),
    IndexModel([("contact_ids", ASCENDING)], name="idx_contact_ids"),
    # Lists filter on hidden = false (and interactions on status): the embedded store serves an
    # equality only from an index named _<field>, else it emits an array-aware OR and scans.
    IndexModel([("hidden", ASCENDING)], name="idx_hidden"),
    IndexModel([("status", ASCENDING)], name="idx_status"),
    # A lead's follow-ups: its history (in either sort order) and the move on its conversion.
    IndexModel([("lead_id", ASCENDING)], name="idx_lead_id"),
    *_sort_indexes(
        {"lead_active": [("lead_id", ASCENDING), ("status", ASCENDING), ("hidden", ASCENDING)]},
        ("occurred_at", "recorded_at"),
    ),
]


def _custom_field_indexes(prefixes: dict[str, list[tuple[str, int]]], sort_key: str, field: str) -> list[IndexModel]:
    """The indexes of a filterable custom field of one list: its value behind each of the list's
    prefixes, then the list's default sort key and the tie-breaker, so ``custom.<key>=<value>``
    is an equality search walked in list order; the value alone too, for a filter under another
    sort. Made when the field becomes filterable, dropped when the flag is cleared or the field
    archived (crm_platform.customfield_store). ``field``: where the filter looks (``custom.<key>``,
    or a copy ``s.cfq_<key>``)."""
    key = field.removeprefix("custom.").removeprefix("s.")
    return [
        *(
            IndexModel(
                [*prefix, (field, ASCENDING), (f"s.{sort_key}", ASCENDING), ("s.id", ASCENDING)],
                name=f"{name}_cf_{key}",
            )
            for name, prefix in prefixes.items()
        ),
        IndexModel([(field, ASCENDING)], name=f"idx_{field}"),
    ]


def _custom_sort_indexes(prefixes: dict[str, list[tuple[str, int]]], field: str) -> list[IndexModel]:
    """The indexes of a sortable custom field of one list: its sort copy behind each of the list's
    prefixes, the record's id last (``sort=custom.<key>`` either way walks one in order, ties
    included: the id then runs the way the custom key does), and the copy alone (a cursor's tie
    branch is an equality on it: named ``idx_<field>`` or it scans). Made when the field becomes
    sortable, dropped when the flag is cleared or the field archived. ``field``: ``s.cf_<key>``."""
    key = field.removeprefix(f"s.{SORT_COPY_PREFIX}")
    return [
        *(
            IndexModel([*prefix, (field, ASCENDING), ("s.id", ASCENDING)], name=f"{name}_cfs_{key}_id")
            for name, prefix in prefixes.items()
        ),
        IndexModel([(field, ASCENDING)], name=f"idx_{field}"),
    ]


def interaction_custom_sort_indexes(field: str) -> list[IndexModel]:
    return _custom_sort_indexes(INTERACTION_PREFIXES, field)


def task_custom_sort_indexes(field: str) -> list[IndexModel]:
    return _custom_sort_indexes(TASK_PREFIXES, field)


def feedback_custom_sort_indexes(field: str) -> list[IndexModel]:
    return _custom_sort_indexes(FEEDBACK_PREFIXES, field)


def interaction_custom_field_indexes(field: str) -> list[IndexModel]:
    """A filterable custom field of interactions: behind each list prefix, in ``-occurred_at`` order."""
    return _custom_field_indexes(INTERACTION_PREFIXES, "occurred_at", field)


def task_custom_field_indexes(field: str) -> list[IndexModel]:
    """A filterable custom field of tasks: behind each list prefix, in ``due_at`` order."""
    return _custom_field_indexes(TASK_PREFIXES, "due_at", field)


def feedback_custom_field_indexes(field: str) -> list[IndexModel]:
    """A filterable custom field of feedback: behind each list prefix, in ``-opened_at`` order."""
    return _custom_field_indexes(FEEDBACK_PREFIXES, "opened_at", field)


TASK_INDEXES = [
    # The scheduler's query: armed notices whose time has come (epoch ms, see tasks.sort_keys).
    IndexModel([("s.fire_at", ASCENDING)], name="s_fire_at"),
    # Lists: mine (assignee), created by me, a team (assignee's department), everything.
    *_sort_indexes(TASK_PREFIXES, ("due_at", "created_at", "remind_at")),
    IndexModel([("assignee_id", ASCENDING)], name="idx_assignee_id"),
    IndexModel([("assignee_department_path", ASCENDING)], name="idx_assignee_department_path"),
    IndexModel([("created_by", ASCENDING)], name="idx_created_by"),
    IndexModel([("customer_id", ASCENDING)], name="idx_customer_id"),
    IndexModel([("opportunity_id", ASCENDING)], name="idx_opportunity_id"),
    IndexModel([("due_at", ASCENDING)], name="idx_due_at"),
    # Lists filter on hidden = false (and interactions on status): the embedded store serves an
    # equality only from an index named _<field>, else it emits an array-aware OR and scans.
    IndexModel([("hidden", ASCENDING)], name="idx_hidden"),
    IndexModel([("status", ASCENDING)], name="idx_status"),
    # A lead's tasks (?lead_id=, in every sort) and the move on its conversion.
    IndexModel([("lead_id", ASCENDING)], name="idx_lead_id"),
    *_sort_indexes(
        {"lead_open": [("lead_id", ASCENDING), ("hidden", ASCENDING), ("status", ASCENDING)]},
        ("due_at", "created_at", "remind_at"),
    ),
]

FEEDBACK_INDEXES = [
    IndexModel([("handler_id", ASCENDING), ("status", ASCENDING)], name="handler_status"),
    # Lists: every alternative of a user's visibility is its own indexed query, in sort order.
    *_sort_indexes(FEEDBACK_PREFIXES, ("opened_at", "updated_at", "priority")),
    IndexModel([("customer_id", ASCENDING)], name="idx_customer_id"),
    IndexModel([(CUSTOMER_OWNER, ASCENDING)], name=f"idx_{CUSTOMER_OWNER}"),
    IndexModel([("handler_id", ASCENDING)], name="idx_handler_id"),
    IndexModel([("reported_by", ASCENDING)], name="idx_reported_by"),
    IndexModel([("status", ASCENDING)], name="idx_status"),
    IndexModel([("reporter_department_path", ASCENDING)], name="idx_reporter_department_path"),
    IndexModel([("handler_department_path", ASCENDING)], name="idx_handler_department_path"),
    IndexModel([("opened_at", DESCENDING)], name="idx_opened_at"),
    IndexModel([("hidden", ASCENDING)], name="idx_hidden"),
]

#: Earlier names of indexes above: MongoDB refuses the same keys under a second name, so they go first.
#: The date-keyed list indexes went with the datetime sort keys (the lists sort on ``s.<key>`` now).
LEGACY_INDEXES = {
    "interactions": (
        "occurred",
        "opportunity",
        "contacts",
        "customer_occurred",
        "author_occurred",
        "dept_occurred",
        "idx_recorded_at",
    ),
    "tasks": ("next_fire_at", "customer", "assignee_due", "dept_due", "creator_due", "idx_next_fire_at"),
    "feedback": ("reporter_dept", "handler_dept", "customer_opened", "reporter_opened", "status_opened"),
}

LIST_PROJECTION = {"outbox": 0}


def _with_copies(
    sort_keys: Callable[[Document], Document], add: Callable[[Document], Document]
) -> Callable[[Document], Document]:
    """``sort_keys`` of a record, with its custom field copies."""

    def keys(doc: Document) -> Document:
        s: Document = add({"custom": doc.get("custom"), "s": sort_keys(doc)})["s"]
        return s

    return keys


class Repository:
    def __init__(self, db: AsyncDatabase[Document], clock: Clock, wake_relay: Any) -> None:
        self.interactions: AsyncCollection[Document] = db["interactions"]
        self.tasks: AsyncCollection[Document] = db["tasks"]
        self.feedback: AsyncCollection[Document] = db["feedback"]
        # Read copies of other services' aggregates.
        self.customers: AsyncCollection[Document] = db["customers"]
        self.leads: AsyncCollection[Document] = db["leads"]
        self.opportunities: AsyncCollection[Document] = db["opportunities"]
        self.directory_users: AsyncCollection[Document] = db["directory_users"]
        self.directory_departments: AsyncCollection[Document] = db["directory_departments"]
        self.migrations: AsyncCollection[Document] = db["migrations"]
        #: The modules' custom field definitions (set by the service): every write of a record keeps
        #: its copies (crm_platform.customfields.copies), and lists sort and filter on them.
        self.fieldsets: FieldSets | None = None
        self.interaction_store = CopyingStore(
            self.interactions,
            clock,
            fieldset=self._fieldset_of("interactions"),
            wake_relay=wake_relay,
            not_found=lambda i: NotFound(f"No interaction with id {i}."),
        )
        self.task_store = CopyingStore(
            self.tasks,
            clock,
            fieldset=self._fieldset_of("tasks"),
            wake_relay=wake_relay,
            not_found=lambda i: NotFound(f"No task with id {i}."),
        )
        self.feedback_store = CopyingStore(
            self.feedback,
            clock,
            fieldset=self._fieldset_of("feedback"),
            wake_relay=wake_relay,
            not_found=lambda i: NotFound(f"No feedback with id {i}."),
        )

    async def ensure_indexes(self) -> None:
        for collection in (self.interactions, self.tasks, self.feedback):
            await drop_indexes_named(collection, LEGACY_INDEXES[collection.name])
        await self.interactions.create_indexes(INTERACTION_INDEXES)
        await self.tasks.create_indexes(TASK_INDEXES)
        await self.feedback.create_indexes(FEEDBACK_INDEXES)
        # Once per database: records stored with datetime sort keys get the integer ones (and the
        # custom field copies the new keys would otherwise lose).
        for store, rules in (
            (self.interaction_store, interaction_rules),
            (self.task_store, task_rules),
            (self.feedback_store, feedback_rules),
        ):
            keys = _with_copies(rules.sort_keys, await store.copier())
            await upgrade_sort_keys(store.collection, keys, rules.SORT_KEYS_VERSION)
        await self.fill_customer_owners()

    def _fieldset_of(self, module: str) -> Callable[[], Awaitable[FieldSet]]:
        """``module``'s definitions as :attr:`fieldsets` gives them (none set yet: no fields)."""

        async def fieldset() -> FieldSet:
            return await self.fieldsets(module) if self.fieldsets is not None else FieldSet({})

        return fieldset

    async def backfill_copies(
        self, collection: AsyncCollection[Document], definition: Document, again: bool = False, batch_size: int = 500
    ) -> int:
        """The copies of a custom field just flagged (:func:`crm_platform.customfield_store.backfill_copies`)
        on every record of ``collection`` whose copies are missing or stale (the marker per module:
        two modules may have a field of the same key); returns how many were rewritten."""
        marker = copies_marker(definition, collection.name)
        return await backfill_copies(
            collection, self.migrations, definition, marker, again=again, batch_size=batch_size
        )

    async def interaction_by_message(self, message_id: str) -> Document | None:
        return await self.interactions.find_one({"message_key": message_id})

    async def records_of_customer(self, collection: AsyncCollection[Document], customer_id: str) -> list[Document]:
        """The customer's records whole (with their outbox): a change can start from them without reading each."""
        return [d async for d in collection.find({"customer_id": customer_id})]

    async def lead_records_without_customer(
        self, collection: AsyncCollection[Document], lead_id: str, limit: int
    ) -> list[Document]:
        """Up to ``limit`` records of the lead not yet moved to a customer, whole (a change starts from them)."""
        return [d async for d in collection.find({"lead_id": lead_id, "customer_id": None}).limit(limit)]

    # --- the customer's owner on its records ------------------------------------------------

    async def customer_owner(self, customer_id: str) -> str | None:
        """The customer's owner as the read copy says now (None: in the pool, or not in the copy)."""
        copy = await self.customers.find_one({"_id": customer_id}, projection={"owner_id": 1})
        return copy.get("owner_id") if copy else None

    async def follow_customer_owner(self, customer_id: str) -> int:
        """Every interaction and feedback of the customer gets its owner as the read copy says now;
        returns how many changed. Each round reads the customer's records by its index and
        rewrites, each by ``_id``, those that differ (the embedded store answers an
        ``update_many`` on a field by reading every row); then the copy is read again, and while
        the owner changed meanwhile (a writer that read it earlier may have written the old one)
        the round runs again.

        Not a versioned change (the field is this service's bookkeeping, in no event), but it
        bumps the outbox revision, so a writer holding an older read of a record retries from
        the new one instead of writing the old owner back."""
        owner_id = await self.customer_owner(customer_id)
        changed = 0
        for _ in range(OWNER_ROUNDS):
            for collection in (self.interactions, self.feedback):
                changed += await self._set_customer_owner(collection, customer_id, owner_id)
            now = await self.customer_owner(customer_id)
            if now == owner_id:
                break
            owner_id = now
        return changed

    async def _set_customer_owner(
        self,
        collection: AsyncCollection[Document],
        customer_id: str,
        owner_id: str | None,
        only_missing: bool = False,
    ) -> int:
        """``owner_id`` on the customer's records of ``collection`` that have another owner or none
        yet (``only_missing``: those that have none yet, and only while they still have none),
        one write each by ``_id``; returns how many changed."""
        records = collection.find({"customer_id": customer_id}, projection={CUSTOMER_OWNER: 1})
        picked = [
            r["_id"]
            async for r in records
            if CUSTOMER_OWNER not in r or (not only_missing and r[CUSTOMER_OWNER] != owner_id)
        ]
        if not picked:
            return 0
        update = {"$set": {CUSTOMER_OWNER: owner_id}, "$inc": {REV: 1}}
        writes = [UpdateOne({"_id": i, CUSTOMER_OWNER: None} if only_missing else {"_id": i}, update) for i in picked]
        result = await collection.bulk_write(writes, ordered=False)
        return result.modified_count

    async def recheck_customer_owner(self, collection: AsyncCollection[Document], record: Document) -> None:
        """After writing ``record`` with its customer's owner as read before: if the owner changed in
        between, :meth:`follow_customer_owner` may have run before the record existed, so it is set
        here (guarded on the value written, so a later change is not undone)."""
        customer_id = record.get("customer_id")
        if customer_id is None:
            return
        owner_id = await self.customer_owner(customer_id)
        if owner_id != record.get(CUSTOMER_OWNER):
            await collection.update_one(
                {"_id": record["_id"], CUSTOMER_OWNER: record.get(CUSTOMER_OWNER)},
                {"$set": {CUSTOMER_OWNER: owner_id}, "$inc": {REV: 1}},
            )

    async def fill_customer_owners(self, batch_size: int = 500) -> int:
        """Once per database: records stored before they kept their customer's owner get it, one
        customer of the read copy at a time (in ``_id`` order, the place kept in ``migrations`` so a
        restart goes on where it stopped); returns how many records changed.

        Only records still without the field are written: one that has it was set by a write or
        an owner change since, which knows better than this pass's earlier read of the copy."""
        if await self.migrations.find_one({"_id": OWNERS_MARKER}) is not None:
            return 0
        progress_id = f"{OWNERS_MARKER}:progress"
        progress = await self.migrations.find_one({"_id": progress_id})
        after = progress["after"] if progress else None
        changed = 0
        while True:
            query = {"_id": {"$gt": after}} if after is not None else {}
            batch = await (
                self.customers.find(query, projection={"owner_id": 1}).sort("_id", ASCENDING).limit(batch_size)
            ).to_list()
            if not batch:
                break
            for copy in batch:
                for collection in (self.interactions, self.feedback):
                    changed += await self._set_customer_owner(
                        collection, copy["_id"], copy.get("owner_id"), only_missing=True
                    )
            after = batch[-1]["_id"]
            await self.migrations.replace_one({"_id": progress_id}, {"_id": progress_id, "after": after}, upsert=True)
        # Two replicas starting together may both get here: the marker is written, not inserted.
        await self.migrations.replace_one(
            {"_id": OWNERS_MARKER}, {"_id": OWNERS_MARKER, "records": changed}, upsert=True
        )
        await self.migrations.delete_one({"_id": progress_id})
        return changed

    async def due_tasks(self, now: datetime, limit: int) -> list[str]:
        cursor = (
            self.tasks.find({"s.fire_at": {"$lte": epoch_ms(now)}}, projection={"_id": 1})
            .sort([("s.fire_at", ASCENDING)])
            .limit(limit)
        )
        return [d["_id"] async for d in cursor]


async def find_all(
    collection: AsyncCollection[Document], query: Document, projection: Document | None = None, *, limit: int = 0
) -> list[Document]:
    """Up to ``limit`` (0: every) matches of ``query``, unsorted, each ``$or`` alternative as its own query.

    The embedded store never uses an index for an ``$or`` (it scans every document);
    one query per alternative can, and the union (by id) is the same set.
    """
    branches = or_branches(query) or [query]
    found: dict[Any, Document] = {}
    for branch in branches:
        async for doc in collection.find(branch, projection=projection).limit(limit):
            found.setdefault(doc["_id"], doc)
            if limit and len(found) >= limit:
                return list(found.values())
    return list(found.values())


async def drop_indexes_named(collection: AsyncCollection[Document], names: tuple[str, ...]) -> None:
    """Drop those of ``names`` the collection has (renamed indexes of an existing database)."""
    present = await collection.index_information()
    for name in names:
        if name in present:
            await collection.drop_index(name)
