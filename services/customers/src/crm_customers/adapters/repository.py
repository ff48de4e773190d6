"""The customers collection: indexes, the versioned store, and the queries list views make."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReplaceOne, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from crm_customers.adapters.keys import CustomerKeys, KeysTaken
from crm_customers.adapters.tag_index import CustomerTags
from crm_customers.domain.rules import identity_keys, match_keys
from crm_platform.availability import store_unavailable
from crm_platform.clock import Clock
from crm_platform.customfield_store import backfill_copies, copier, copies_marker
from crm_platform.customfields import SORT_COPY_PREFIX, FieldSet
from crm_platform.errors import Conflict, NotFound
from crm_platform.events import EventEnvelope
from crm_platform.indexes import drop_replaced
from crm_platform.leases import release_in_background, release_soon
from crm_platform.listing import count
from crm_platform.retention import ensure_record_index, purge_records
from crm_platform.store import Change, Decide, VersionedStore

Document = dict[str, Any]

#: The sort keys (rules.SORT_FIELDS) besides the dates and the name, each indexed behind every scope.
OTHER_SORT_KEYS = ("industry", "tier", "lifecycle_stage", "size", "source", "owner_id", "province", "city", "kind")

_PREFIXES: dict[str, list[tuple[str, int]]] = {
    "status": [("status", ASCENDING)],
    "owner_status": [("owner_id", ASCENDING), ("status", ASCENDING)],
    "dept_status": [("department_path", ASCENDING), ("status", ASCENDING)],
    "pool_status": [("in_pool", ASCENDING), ("status", ASCENDING)],
}
#: List indexes of earlier versions, replaced by the ``*_id`` and ``*_tierdesc_name`` ones below
#: (without the tie-breaker ``s.id``, or on the tier descending): dropped at start-up.
REPLACED_INDEXES = [
    *(IndexModel([*prefix, ("s.updated_at", DESCENDING)], name=f"{p}_updated") for p, prefix in _PREFIXES.items()),
    *(
        IndexModel([*prefix, (f"s.{key}", ASCENDING)], name=f"{p}_{key}")
        for p, prefix in _PREFIXES.items()
        for key in ("name", "created_at", "last_followed_up_at")
    ),
    *(
        IndexModel([*prefix, ("s.tier", DESCENDING), ("s.name", ASCENDING), ("s.id", ASCENDING)], name=f"{p}_tier_name")
        for p, prefix in _PREFIXES.items()
    ),
]

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
    # Equality on status must name an index ending in _status, or the embedded store writes it
    # as an array-aware OR that keeps the compound list indexes below from being used.
    IndexModel([("status", ASCENDING)], name="idx_status"),
    # List views: the visibility prefix (owner, department, pool) plus the default sort, and the
    # tie-breaker in the same direction. Every list index ends with ``s.id``: without it the rows
    # that tie on the sort key are sorted whole before the page's LIMIT applies, and a key many
    # customers share (never followed up, one import's creation time) made that the whole scope
    # (ascending last_followed_up_at: 1.3-2.8 s per admin page at 100k, bench/customers_sorts_100k.py).
    *(
        IndexModel([*prefix, ("s.updated_at", DESCENDING), ("s.id", DESCENDING)], name=f"{name}_updated_id")
        for name, prefix in _PREFIXES.items()
    ),
    # The other sorts people use most, behind each visibility prefix, so page N of a big list (the
    # pool, a department, everything for an admin) walks an index instead of sorting every match.
    *(
        IndexModel([*prefix, (f"s.{key}", ASCENDING), ("s.id", ASCENDING)], name=f"{name}_{key}_id")
        for key in ("name", "created_at", "last_followed_up_at")
        for name, prefix in _PREFIXES.items()
    ),
    # Every other sort key the list offers, behind each visibility prefix, the customer's id last:
    # without them a sort by industry (or tier, stage, size, source, owner, province, city, kind)
    # sorted the whole scope on every page, seconds for an admin or a manager at 100k customers and
    # 503s at 16 readers (bench/customers_sorts_100k.py). Each costs a write well under 0.1 ms on
    # the embedded store (raw inserts 1,100/s with the 43 indexes before, 700-1,000/s with these).
    *(
        IndexModel([*prefix, (f"s.{key}", ASCENDING), ("s.id", ASCENDING)], name=f"{name}_{key}_id")
        for key in OTHER_SORT_KEYS
        for name, prefix in _PREFIXES.items()
    ),
    # A user's own recycle bin (GET /v1/my-recycle-bin): what they deleted, last deleted first.
    IndexModel(
        [("deleted.by", ASCENDING), ("status", ASCENDING), ("s.updated_at", DESCENDING), ("s.id", DESCENDING)],
        name="deletedby_status_updated_id",
    ),
    # ``deleted.by = me`` is then a scalar comparison that index serves, not an array test of each row.
    IndexModel([("deleted.by", ASCENDING)], name="idx_deleted.by"),
    # A cursor's tie branch is an equality on the sort key: an index named idx_<field>, or it scans.
    *(IndexModel([(f"s.{key}", ASCENDING)], name=f"idx_s.{key}") for key in OTHER_SORT_KEYS if key != "tier"),
    # Tier first, then name (a manager's "A customers first"), behind each visibility prefix: on the
    # tier's order-reversing copy (rules.DESCENDING_COPIES), so the whole order is ascending.
    *(
        IndexModel(
            [*prefix, ("s.tier_desc", ASCENDING), ("s.name", ASCENDING), ("s.id", ASCENDING)],
            name=f"{name}_tierdesc_name",
        )
        for name, prefix in _PREFIXES.items()
    ),
    # A cursor's tie branch is an equality on the first sort key: named idx_<field> or it scans.
    IndexModel([("s.tier", ASCENDING)], name="idx_s.tier"),
    IndexModel([("s.tier_desc", ASCENDING)], name="idx_s.tier_desc"),
    IndexModel([("tags", ASCENDING)], name="idx_tags"),
    IndexModel([("s.last_followed_up_at", ASCENDING)], name="idx_s.last_followed_up_at"),
    IndexModel([("s.created_at", ASCENDING)], name="idx_s.created_at"),
    IndexModel([("s.updated_at", ASCENDING)], name="idx_s.updated_at"),
    IndexModel([("s.name", ASCENDING)], name="idx_s.name"),
    IndexModel([("s.id", ASCENDING)], name="idx_s.id"),
    IndexModel([("industry", ASCENDING)], name="idx_industry"),
    IndexModel([("tier", ASCENDING)], name="idx_tier"),
    IndexModel([("lifecycle_stage", ASCENDING)], name="idx_lifecycle_stage"),
    IndexModel([("address.city", ASCENDING)], name="idx_address.city"),
]


def custom_field_indexes(field: str) -> list[IndexModel]:
    """The indexes of a filterable custom field: its value behind each visibility prefix, then the
    default sort and the tie-breaker, so ``custom.<key>=<value>`` in any scope is an equality
    search walked in list order; without them the store walked the scope's own list index and
    tested every row for the value (the whole scope for a rare value). The value alone too, for
    a filter under another sort. Made when the field becomes filterable, dropped when it stops.
    ``field``: where the filter looks, ``custom.<key>`` or a date's or money's copy ``s.cfq_<key>``."""
    key = field.removeprefix("custom.").removeprefix("s.")
    return [
        *(
            IndexModel(
                [*prefix, (field, ASCENDING), ("s.updated_at", DESCENDING), ("s.id", DESCENDING)],
                name=f"{name}_cf_{key}_updated_id",
            )
            for name, prefix in _PREFIXES.items()
        ),
        IndexModel([(field, ASCENDING)], name=f"idx_{field}"),
    ]


def custom_sort_indexes(field: str) -> list[IndexModel]:
    """The indexes of a sortable custom field: its sort copy behind each visibility prefix, the
    customer's id last (so ``sort=custom.<key>`` either way walks an index in order, ties
    included), and the copy alone (a cursor's tie branch is an equality on it: named
    ``idx_<field>`` or it scans). Made when the field becomes sortable, dropped when it stops.
    ``field``: the sort copy, ``s.cf_<key>``."""
    key = field.removeprefix(f"s.{SORT_COPY_PREFIX}")
    return [
        *(
            IndexModel([*prefix, (field, ASCENDING), ("s.id", ASCENDING)], name=f"{name}_cfs_{key}_id")
            for name, prefix in _PREFIXES.items()
        ),
        IndexModel([(field, ASCENDING)], name=f"idx_{field}"),
    ]


class DuplicateKeys(Exception):
    """A new customer's key is held by existing customers (first entered owns)."""

    def __init__(self, holders: list[Document]) -> None:
        super().__init__(", ".join(str(h["_id"]) for h in holders))
        self.holders = holders


@dataclass
class OwnerHolding:
    """An owner's lease, held: how many active customers they hold (None: to be counted), and
    how many this holder gave them, added to the count when the lease is given back."""

    owner_id: str
    held: int | None
    taken: int = 0

    def took(self, n: int = 1) -> None:
        self.taken += n


class CustomerRepository:
    def __init__(self, db: AsyncDatabase[Document], clock: Clock, wake_relay: Any) -> None:
        self.collection: AsyncCollection[Document] = db["customers"]
        self.views: AsyncCollection[Document] = db["saved_views"]
        self.migrations: AsyncCollection[Document] = db["migrations"]
        self.owner_locks: AsyncCollection[Document] = db["owner_locks"]
        # One record per CSV export (who, the filter, how many rows): the outbox its event leaves from.
        self.exports: AsyncCollection[Document] = db["exports"]
        # One record per import that wrote (who, the counts): the outbox its event leaves from.
        self.import_records: AsyncCollection[Document] = db["import_records"]
        self.keys = CustomerKeys(db["customer_keys"])
        self.tags = CustomerTags(db)
        self.clock = clock
        # In-process queue in front of the lease, so waiters here do not poll the store.
        self._local_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self.store = VersionedStore(
            self.collection, clock, wake_relay=wake_relay, not_found=lambda i: NotFound(f"No customer with id {i}.")
        )
        self.export_store = VersionedStore(self.exports, clock, wake_relay=wake_relay)
        self.import_store = VersionedStore(self.import_records, clock, wake_relay=wake_relay)
        #: The customers' custom field definitions (set by the service): every write keeps the
        #: copies of the sortable ones (``s.cf_<key>``) and of filterable dates and money (``s.cfq_<key>``).
        self.fieldset: Callable[[], Awaitable[FieldSet]] | None = None

    async def _field_copies(self) -> Callable[[Document], Document]:
        """What adds the custom fields' copies to a customer's sort keys, as now defined."""
        return copier(await self.fieldset() if self.fieldset is not None else FieldSet({}))

    async def ensure_indexes(self) -> None:
        await self.collection.create_indexes(INDEXES)
        # List indexes an earlier version made, replaced by those above: dropped (each costs every
        # write) once their successors exist.
        await drop_replaced(self.collection, INDEXES, REPLACED_INDEXES)
        await self.tags.ensure_indexes()
        # The source records' retention purge walks them by age.
        await ensure_record_index(self.exports)
        await ensure_record_index(self.import_records)
        # A person's saved views: listed by owner, and one name once per owner (the API's 409).
        views_index = [IndexModel([("owner_id", ASCENDING), ("name", ASCENDING)], name="owner_name", unique=True)]
        try:
            await self.views.create_indexes(views_index)
        except (DuplicateKeyError, OperationFailure) as exc:
            if not _duplicate_key(exc):
                raise
            # Saved before names were unique per owner: number the later ones, then index.
            await self._rename_duplicate_views()
            await self.views.create_indexes(views_index)

    async def purge_records(self, retention_days: float, batch_size: int) -> int:
        """Export and import records older than the retention whose events have left: deleted."""
        now = self.clock.now()
        exports = await purge_records(self.exports, now, retention_days, batch_size)
        return exports + await purge_records(self.import_records, now, retention_days, batch_size)

    async def _rename_duplicate_views(self) -> None:
        seen: set[tuple[str, str]] = set()
        async for view in self.views.find({}).sort([("owner_id", ASCENDING), ("created_at", ASCENDING)]):
            key, n = (view["owner_id"], view["name"]), 1
            while key in seen:
                n += 1
                key = (view["owner_id"], f"{view['name']} ({n})")
            seen.add(key)
            if key[1] != view["name"]:
                await self.views.update_one({"_id": view["_id"]}, {"$set": {"name": key[1]}})

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
        add_copies = await self._field_copies()
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
                batch.append(ReplaceOne(guard, add_copies({**doc, "s": sort_keys(doc)})))
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

    async def backfill_copies(self, definition: Document, again: bool = False, batch_size: int = 500) -> int:
        """The copies of a custom field just flagged (:func:`crm_platform.customfield_store.backfill_copies`)
        on every customer whose copies are missing or stale, and on those customers' tag
        memberships (what tag lists filter and sort on), each batch's memberships first: a
        backfill cut short between the two finds these customers still stale and writes both
        again, where the other order would leave memberships without the copies. Returns how many
        customers were rewritten."""
        return await backfill_copies(
            self.collection,
            self.migrations,
            definition,
            copies_marker(definition),
            again=again,
            batch_size=batch_size,
            before_batch=self.tags.copy_set,
        )

    async def get(self, customer_id: str) -> Document | None:
        return await self.collection.find_one({"_id": customer_id})

    async def get_many(self, customer_ids: Sequence[str]) -> dict[str, Document]:
        """The customers with these ids, by id, in one command. ``$in`` on ``_id`` is a search of
        the ``_id`` index on the embedded store (``WHERE _id IN (...)``), unlike ``$in`` on other
        fields, which scans: pinned by the customers' plan test."""
        if not customer_ids:
            return {}
        return {doc["_id"]: doc async for doc in self.collection.find({"_id": {"$in": list(customer_ids)}})}

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
        probe = {
            "kind": kind,
            "name_normalised": name_normalised,
            "uscc": uscc,
            "match_phones": list(phones),
            "match_emails": list(emails),
        }
        return await self.holders_of(match_keys(probe), exclude_id=exclude_id, limit=limit)

    async def holders_of(
        self, keys: Sequence[str], *, exclude_id: str | None = None, limit: int | None = 20
    ) -> list[Document]:
        """The customers that really hold any of ``keys`` (two ``_id`` lookups: keys, then customers)."""
        recorded = await self.keys.holders(keys)
        ids = sorted({h for holders in recorded.values() for h in holders} - {exclude_id})
        if not ids:
            return []
        wanted = set(keys)
        found = [
            doc
            async for doc in self.collection.find({"_id": {"$in": ids}}, projection=MATCH_PROJECTION)
            if identity_keys(doc) & wanted  # a holder that dropped the key since is stale
        ]
        # Keep the order of the keys asked for (the name first), as the old per-key queries did.
        order = {key: i for i, key in enumerate(keys)}
        found.sort(key=lambda d: min(order.get(k, len(order)) for k in identity_keys(d) & wanted))
        return found if limit is None else found[:limit]

    # --- writes that keep the duplicate-check keys in step ------------------------------------

    async def insert_new(self, doc: Document, events: Sequence[tuple[str, EventEnvelope]]) -> Document:
        """Insert a new customer after claiming its keys; :class:`DuplicateKeys` names the holders
        if another customer holds one (stale holders are taken over instead)."""
        (await self._field_copies())(doc)
        keys = identity_keys(doc)
        try:
            await self.keys.claim(keys, doc["_id"])
        except KeysTaken as taken:
            holders = await self.holders_of(sorted(taken.keys), exclude_id=doc["_id"])
            if holders:
                await self.keys.remove(keys - taken.keys, doc["_id"])
                raise DuplicateKeys(holders) from taken
            for key in taken.keys:  # every recorded holder was stale: the key is free
                await self.keys.take_over(key, doc["_id"], stale=(await self.keys.holders([key])).get(key, []))
        try:
            # A new customer's tag memberships go first, in one command and with no note: until the
            # customer is stored, a page takes them for a create in flight and skips them; if this
            # create fails or dies before its insert, they are orphans a page removes later
            # (tag_index.in_flight). A customer without tags costs nothing here.
            await self.tags.write_new(self.store.first_state(doc))
            stored = await self.store.insert(doc, events)
        except BaseException:
            # Give the keys back, unless the customer is stored under this id after all (a retry
            # with the same Idempotency-Key racing its first attempt: the keys are that one's).
            if await self.get(doc["_id"]) is None:
                await self.keys.remove(keys, doc["_id"])
            raise
        return stored

    async def sync_tags(self, stored: Document) -> None:
        """The customer's tag memberships from what was just stored, then the write's note cleared."""
        await self.tags.sync(stored, stored["_id"])
        await self.tags.done(stored["_id"])

    async def _settle_tags(self, customer_id: str) -> None:
        """After a write that failed: usually nothing was written (a conflict, a domain error), but
        a lost connection leaves it unknown, so resync from what is stored. If that fails too the
        note stays, for the next start-up."""
        with contextlib.suppress(Exception):
            await self.tags.resync(self.collection, [customer_id])
            await self.tags.done(customer_id)

    async def replace_guarded(self, guard: Document, doc: Document) -> bool:
        """A guarded replace of a whole customer outside :meth:`mutate` (derived fields, no new
        version), its tag memberships kept in step; False when the guard no longer matches."""
        (await self._field_copies())(doc)
        if not doc.get("tags"):
            # Derived fields only: the tags are those of the state the guard names, none here, so
            # the customer has no memberships to rewrite (a follow-up costs no extra command).
            return bool((await self.collection.replace_one(guard, doc)).matched_count)
        await self.tags.note(doc["_id"])
        result = await self.collection.replace_one(guard, doc)
        if result.matched_count:
            await self.sync_tags(doc)
        else:
            await self.tags.done(doc["_id"])
        return bool(result.matched_count)

    async def mutate(self, customer_id: str, decide: Decide, *, expected_version: int | None = None) -> Document:
        """:meth:`VersionedStore.mutate`, with the keys the new state adds recorded before the
        write and those it drops removed after it."""
        before: dict[str, set[str]] = {}
        noted: list[bool] = []  # the tag memberships' note taken (once, before the first write that needs it)
        add_copies = await self._field_copies()

        async def decide_and_add_keys(doc: Document, version: int) -> Change:
            before["keys"] = identity_keys(doc)  # decide changes doc in place: read its keys first
            had_tags = bool(doc.get("tags"))
            decided = decide(doc, version)
            change = await decided if isinstance(decided, Awaitable) else decided
            if change.state is not None:
                add_copies(change.state)
                added = identity_keys(change.state) - before["keys"]
                if added:
                    await self.keys.add(added, customer_id)
                # Memberships change only for a customer with tags before or after this write.
                if not noted and (had_tags or change.state.get("tags")):
                    await self.tags.note(customer_id)
                    noted.append(True)
            return change

        try:
            after = await self.store.mutate(customer_id, decide_and_add_keys, expected_version=expected_version)
        except BaseException:
            if noted:
                await self._settle_tags(customer_id)
            raise
        if noted:
            await self.sync_tags(after)
        # The keys of the state this write replaced, less those the new state holds.
        dropped = before.get("keys", set()) - identity_keys(after)
        if dropped:
            await self.keys.remove(dropped, customer_id)
        return after

    async def rebuild_keys(self, version: int = 1) -> int:
        """Once: key documents for every stored customer (customers stored before keys existed)."""
        marker = f"customer_keys_v{version}"
        if await self.migrations.find_one({"_id": marker}) is not None:
            return 0
        written = await self.keys.rebuild(self.collection, identity_keys)
        with contextlib.suppress(DuplicateKeyError):
            await self.migrations.insert_one({"_id": marker, "keys": written})
        return written

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

    async def active_count_for_owner(self, owner_id: str, cap: int = 100_000) -> int:
        """How many active customers an owner holds, counted exactly (up to ``cap``).

        An indexed read of the owner's ids, not the count command: the embedded store answers
        that by reading every customer (53 ms at 6.4k customers, growing with each one).
        """
        query = {"owner_id": owner_id, "status": "active"}
        return len(await self.collection.find(query, projection={"_id": 1}).limit(cap).to_list())

    @asynccontextmanager
    async def owner_lock(
        self, owner_id: str, lease_seconds: float = 10.0, wait_seconds: float = 10.0
    ) -> AsyncIterator[OwnerHolding]:
        """Hold one owner's lease while checking what they hold and giving them more.

        Count-then-write is a race: concurrent creates or claims for one rep would all see
        room under the limit. A lease on a per-owner document (a conditional update, atomic
        on MongoDB and on the embedded store, and safe across replicas) serialises them; a
        crashed holder's lease simply expires.

        The lease document also keeps how many active customers the owner holds, so a create
        does not count them: each holder adds what it gave (``holding.took()``) when it gives
        the lease back. Ways of losing a customer (release, delete, merge, assignment to
        someone else) do not take the lease and leave the number too high, never too low, so
        a holder who finds the owner at the limit counts exactly before refusing
        (:meth:`ensure_room`). A lease that expired without being given back (a crash after
        the write) leaves the number unknown, and the next holder counts.
        """
        local = self._local_locks.get(owner_id)
        if local is None:
            local = self._local_locks[owner_id] = asyncio.Lock()
        async with local, self._owner_lease(owner_id, lease_seconds, wait_seconds) as holding:
            yield holding

    async def ensure_room(self, holding: OwnerHolding, limit: int, needed: int = 1) -> int:
        """The owner's exact holding if ``needed`` more would take them past ``limit`` by the kept
        number; raises nothing, the caller decides. Returns the number to check against the limit.

        Counted in full, not just past ``limit``: the limit differs by department and changes with
        the pool's rules, so a number capped at one limit would be too low under a higher one."""
        if holding.held is None or holding.held + needed > limit:
            holding.held = await self.active_count_for_owner(holding.owner_id)
        return holding.held

    @asynccontextmanager
    async def _owner_lease(
        self, owner_id: str, lease_seconds: float, wait_seconds: float
    ) -> AsyncIterator[OwnerHolding]:
        token = uuid.uuid4().hex
        what = f"owner {owner_id}"
        holding = OwnerHolding(owner_id, None)

        async def release() -> None:
            # Unknown stays unknown (None): the next holder counts.
            held = None if holding.held is None else holding.held + holding.taken
            update: Document = {"until": 0.0, "token": None, "held": held}
            await self.owner_locks.update_one({"_id": owner_id, "token": token}, {"$set": update})

        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while True:
            now = self.clock.now().timestamp()
            try:
                before = await self.owner_locks.find_one_and_update(
                    {"_id": owner_id, "until": {"$lt": now}},
                    {"$set": {"until": now + lease_seconds, "token": token}},
                    return_document=ReturnDocument.BEFORE,
                )
            except Exception as exc:
                if store_unavailable(exc):
                    # The store may have applied the update before the connection died: if the
                    # lease is ours, give it back once the store is back, not when it expires.
                    release_in_background(release, lease_seconds, what)
                raise
            if before is not None:
                # A lease nobody gave back (its holder died after writing, maybe) leaves the
                # kept number unknown; otherwise it is what the last holder left.
                held = before.get("held")
                holding.held = held if before.get("token") is None and isinstance(held, int) else None
                break
            try:  # no lock document yet for this owner: make one (the next round takes it)
                await self.owner_locks.insert_one({"_id": owner_id, "until": 0.0, "token": None})
                continue
            except DuplicateKeyError:
                pass  # it exists and someone holds it
            if loop.time() > deadline:
                raise Conflict(f"Another change for {owner_id} is in progress; retry in a moment.")
            await asyncio.sleep(0.005)
        try:
            yield holding
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


def _duplicate_key(exc: PyMongoError) -> bool:
    """A unique index refused existing duplicates (MongoDB: code 11000; the embedded store says
    "UNIQUE constraint failed")."""
    text = str(exc).lower()
    return (
        isinstance(exc, DuplicateKeyError)
        or getattr(exc, "code", None) == 11000
        or "duplicate" in text
        or "unique constraint" in text
    )
