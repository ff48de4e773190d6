"""Tag membership as documents of their own: what a tag-filtered list pages on.

``tags`` is an array, and the embedded store answers ``$in``/``$all`` on an array with a
per-row ``json_each`` subquery that no index serves: a department-wide ``tags_any`` at 100k
read every customer of a tier and sorted them all, page 10 again behind its cursor. Here
each (customer, tag) pair is one document in ``customer_tags``, ``_id`` = ``<customer id>:<tag>``
(customer ids hold no colon), carrying the tag as a scalar and a copy of every field a list
filters or sorts on (:data:`COPIED`), so the list's own query, with ``tag`` for the tags,
runs here on compound indexes that put the tag before the visibility prefix and the sort.
The page's customers are then loaded by ``_id`` (an indexed ``IN`` on the store).

The customer document stays the truth; these are derived from it:

* every write of a customer with tags before or after it (repository) first notes the customer in
  ``customer_tags_pending``, then writes the customer, then rewrites its memberships from what was
  stored (:meth:`CustomerTags.sync`), then clears the note; a write of a customer without tags
  before or after costs nothing here. A crash between two of those writes leaves the note, and
  the next start-up resyncs every noted customer (:meth:`resync_pending`).
* a new customer's memberships are written just before the customer itself, with no note
  (:meth:`CustomerTags.write_new`: one command): a membership whose customer is not stored is a
  create in flight, which a page skips, or, once older than :data:`ORPHAN_AFTER_MS`, what a
  create that failed or died between the two writes left, which a page removes (:func:`in_flight`).
* a page checks each row against the customer it loaded (:func:`is_current`): a row written
  by a slower concurrent writer, or left by a crash, is dropped from the page, the customer
  resynced and the page asked again, so a list never shows a customer under a tag, scope or
  position it no longer has. Writes are guarded by the customer's state (:func:`written_at`),
  so an older state synced late never removes what a newer one wrote.
* the first start-up after this shipped builds the memberships of every stored customer
  (:meth:`rebuild`, once per :data:`VERSION`, recorded in ``migrations``).

Custom fields: a membership carries its customer's ``custom`` values and whole ``s`` (with the
copies of sortable fields, ``s.cf_<key>``, and of filterable dates and money, ``s.cfq_<key>``), so a
tag-filtered list filters and sorts on custom fields with the same query as an untagged one.
A filterable field gets indexes here too (:func:`custom_field_indexes`: the tag, the visibility
prefix, where its filter looks, the default sort, the id) and a sortable one
(:func:`custom_sort_indexes`: the tag, the prefix, its sort copy, the id), made and dropped with the
flags by :class:`~crm_platform.customfield_store.CustomFields` (``extra_indexes``). A backfill of a
field's copies writes the same ``$set`` on the memberships of each customer it rewrites, guarded by
the customer's state (:meth:`CustomerTags.copy_set`); a membership it missed is stale by
:func:`is_current` (``listed`` compares ``s`` and ``custom``), so a page drops and resyncs it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING, DeleteMany, IndexModel, ReplaceOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from crm_platform.indexes import drop_replaced

Document = dict[str, Any]

#: Customer fields a list filters or sorts on, copied onto each membership (same names, so the
#: list's query runs unchanged on either collection). ``tags`` too, for ``tags_all``'s other tags;
#: ``s`` whole, with the custom fields' copies (``s.cf_<key>`` sorts, ``s.cfq_<key>`` date and money
#: filters); ``custom`` whole, for ``custom.<key>=`` filters on the values themselves.
COPIED = (
    "status",
    "owner_id",
    "department_id",
    "department_path",
    "in_pool",
    "kind",
    "industry",
    "size",
    "source",
    "tier",
    "lifecycle_stage",
    "uscc",
    "address",
    "match_phones",
    "match_emails",
    "name_normalised",
    "tags",
    "s",
    "custom",
)
#: The memberships' shape: a start-up with a newer one rebuilds every membership once (2: ``custom``).
VERSION = 2
#: Statuses listed (the active list and the recycle bin); merged and purged customers have no memberships.
LISTED = ("active", "deleted")

#: The sorts indexed behind each visibility prefix: the default, the single keys people use
#: most, and tier-then-name (a manager's "A customers first"). Others sort the prefix's matches.
SORTS: dict[str, list[tuple[str, int]]] = {
    "updated_desc": [("s.updated_at", DESCENDING)],  # the default, "-updated_at": its id descending too
    "name": [("s.name", ASCENDING)],
    "created_at": [("s.created_at", ASCENDING)],
    "last_followed_up_at": [("s.last_followed_up_at", ASCENDING)],
    "tierdesc_name": [("s.tier_desc", ASCENDING), ("s.name", ASCENDING)],  # "-tier,name" (rules.DESCENDING_COPIES)
}
#: Visibility prefixes behind the tag: everything (admin; a manager's department, whose path
#: regex is tested on the rows walked), one owner (rep), the pool.
PREFIXES: dict[str, list[tuple[str, int]]] = {
    "tag_status": [("tag", ASCENDING), ("status", ASCENDING)],
    "tag_owner_status": [("tag", ASCENDING), ("owner_id", ASCENDING), ("status", ASCENDING)],
    "tag_pool_status": [("tag", ASCENDING), ("in_pool", ASCENDING), ("status", ASCENDING)],
}
#: Equality on a field the store knows no ``idx_<field>`` index for becomes an array-aware OR
#: that keeps the compound indexes from being used, so every field a list tests for equality
#: (a filter, a cursor's tie branch) has one.
EQUALITY_FIELDS = (
    "tag",
    "cid",
    "status",
    "owner_id",
    "department_id",
    "department_path",
    "in_pool",
    "kind",
    "industry",
    "size",
    "source",
    "tier",
    "lifecycle_stage",
    "uscc",
    "address.province",
    "address.city",
    "address.district",
    "s.tier",
    "s.tier_desc",
    "s.name",
    "s.updated_at",
    "s.created_at",
    "s.last_followed_up_at",
    "s.id",
)
#: Indexes of earlier versions: the default sort's id ran ascending under its descending moment, and
#: tier-then-name ran on the tier itself, descending (both sorted tie groups whole).
REPLACED_INDEXES = [
    IndexModel([*prefix, *sort, ("s.id", ASCENDING)], name=f"{p}_{s}")
    for p, prefix in PREFIXES.items()
    for s, sort in (
        ("updated", [("s.updated_at", DESCENDING)]),
        ("tier_name", [("s.tier", DESCENDING), ("s.name", ASCENDING)]),
    )
]
INDEXES = [
    # The customer's id (``s.id``, the list's last sort key) ends each: a cursor's tie branch
    # (equal first keys, a range on the next) then comes out in index order, unsorted.
    *(
        IndexModel([*prefix, *sort, ("s.id", sort[-1][1])], name=f"{p}_{s}")
        for p, prefix in PREFIXES.items()
        for s, sort in SORTS.items()
    ),
    *(IndexModel([(field, ASCENDING)], name=f"idx_{field}") for field in EQUALITY_FIELDS),
]


def custom_field_indexes(field: str) -> list[IndexModel]:
    """The memberships' indexes of a filterable custom field (``field``: where its filter looks,
    ``custom.<key>`` or a date's or money's copy ``s.cfq_<key>``): the tag, each visibility prefix,
    the field, then the default sort and the id, so a tag list's ``custom.<key>=`` filter is an
    equality (or range) search in every scope; and the field alone (an equality must name an
    ``idx_<field>`` index, see :data:`EQUALITY_FIELDS`)."""
    key = field.removeprefix("custom.").removeprefix("s.")
    return [
        *(
            IndexModel(
                [*prefix, (field, ASCENDING), ("s.updated_at", DESCENDING), ("s.id", DESCENDING)],
                name=f"{p}_cf_{key}_updated_id",
            )
            for p, prefix in PREFIXES.items()
        ),
        IndexModel([(field, ASCENDING)], name=f"idx_{field}"),
    ]


def custom_sort_indexes(field: str) -> list[IndexModel]:
    """The memberships' indexes of a sortable custom field (``field``: its sort copy ``s.cf_<key>``):
    the tag, each visibility prefix, the copy, the id (a tag list's ``sort=custom.<key>`` either way
    walks one in order), and the copy alone (a cursor's tie branch is an equality on it)."""
    key = field.removeprefix("s.cf_")
    return [
        *(
            IndexModel([*prefix, (field, ASCENDING), ("s.id", ASCENDING)], name=f"{p}_cfs_{key}_id")
            for p, prefix in PREFIXES.items()
        ),
        IndexModel([(field, ASCENDING)], name=f"idx_{field}"),
    ]


def membership_id(customer_id: str, tag: str) -> str:
    return f"{customer_id}:{tag}"


def written_at(doc: Document) -> int:
    """Where a stored customer's state stands among its states: every write that changes what a
    list shows raises its version or its ``outbox_rev`` (the follow-up time), neither ever drops."""
    return int(doc.get("version") or 0) * 10**9 + int(doc.get("outbox_rev") or 0)


def memberships_of(doc: Document) -> list[Document]:
    """The membership documents a stored customer should have (none unless listed)."""
    if doc.get("status") not in LISTED:
        return []
    copied = {field: doc.get(field) for field in COPIED}
    at = written_at(doc)
    return [
        {"_id": membership_id(doc["_id"], tag), "tag": tag, "cid": doc["_id"], "at": at, **copied}
        for tag in dict.fromkeys(doc.get("tags") or [])
    ]


def listed(membership: Document) -> Document:
    """What a list shows of a membership (which customer, under which tag, where, to whom): a
    membership read back is current when this equals the same of :func:`memberships_of` its customer."""
    return {"tag": membership.get("tag"), "cid": membership.get("cid")} | {f: membership.get(f) for f in COPIED}


#: How long a membership whose customer is not stored is taken for a create in flight (its
#: memberships are written just before the customer); after that it is an orphan, removed by the
#: page that meets it. Generous: a create's two writes are milliseconds apart, but a store
#: that stalls can hold the second for its whole timeout.
ORPHAN_AFTER_MS = 10 * 60 * 1000


def in_flight(membership: Document, customer: Document | None, now_ms: int) -> bool:
    """A membership of a customer being created: not stored yet, and the membership is recent."""
    created = (membership.get("s") or {}).get("created_at")
    return customer is None and isinstance(created, int) and created > now_ms - ORPHAN_AFTER_MS


def is_current(membership: Document, customer: Document | None) -> bool:
    if customer is None:
        return False
    wanted = next((m for m in memberships_of(customer) if m["tag"] == membership.get("tag")), None)
    return wanted is not None and listed(wanted) == listed(membership)


class CustomerTags:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.collection: AsyncCollection[Document] = db["customer_tags"]
        self.pending: AsyncCollection[Document] = db["customer_tags_pending"]
        self.migrations: AsyncCollection[Document] = db["migrations"]

    async def ensure_indexes(self) -> None:
        await self.collection.create_indexes(INDEXES)
        await drop_replaced(self.collection, INDEXES, REPLACED_INDEXES)  # each costs every write

    async def note(self, customer_id: str) -> None:
        """Before a customer's write: if this process dies before :meth:`done`, start-up resyncs it."""
        await self.pending.replace_one({"_id": customer_id}, {"_id": customer_id}, upsert=True)

    async def done(self, customer_id: str) -> None:
        await self.pending.delete_one({"_id": customer_id})

    async def sync(self, doc: Document | None, customer_id: str) -> None:
        """Make the customer's memberships what its stored document ``doc`` says (``None``: gone).

        Each write is guarded by :func:`written_at`: a writer that stored an older state and
        syncs after a newer one neither overwrites nor deletes what the newer state wrote (an
        upsert whose guard fails is a duplicate key, ignored). It may still add a membership
        the newer state dropped; a page finds that one stale and resyncs. A membership is
        never missing for a tag the customer holds, which a page could not notice.
        """
        wanted = {m["_id"]: m for m in memberships_of(doc)} if doc is not None else {}
        at = written_at(doc) if doc is not None else 2**62  # gone: whatever was written goes
        held = [m["_id"] async for m in self.collection.find({"cid": customer_id}, projection={"_id": 1})]
        ops: list[ReplaceOne[Document] | DeleteMany] = []
        stale = [i for i in held if i not in wanted]
        if stale:
            ops.append(DeleteMany({"_id": {"$in": stale}, "at": {"$lte": at}}))
        ops.extend(ReplaceOne({"_id": i, "at": {"$lte": at}}, m, upsert=True) for i, m in wanted.items())
        if not ops:
            return
        await self._write(ops)

    async def write_new(self, doc: Document) -> None:
        """A customer about to be inserted (so it has no memberships yet): its memberships, without
        reading first and without a note (see :func:`in_flight`). Guarded like :meth:`sync`, so a
        newer state's write is never undone."""
        wanted = memberships_of(doc)
        if wanted:
            await self._write([ReplaceOne({"_id": m["_id"], "at": {"$lte": m["at"]}}, m, upsert=True) for m in wanted])

    async def _write(self, ops: Sequence[ReplaceOne[Document] | DeleteMany]) -> int:
        """Unordered; a guarded upsert that met a newer membership (a duplicate key) is skipped."""
        try:
            await self.collection.bulk_write(list(ops), ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != 11000 for e in errors):
                raise
            return len(ops) - len(errors)
        return len(ops)

    async def copy_set(self, customers: Sequence[tuple[Document, Document]]) -> int:
        """A backfill's ``$set`` of copies (``s.<name>``) on the memberships of each customer it is
        about to rewrite, given as (stored customer, ``$set``). Guarded like :meth:`sync` by the
        customer's state (:func:`written_at`; the relay's publishing raises it past the memberships'
        own): a membership a newer state wrote is left alone (that writer added the copies itself);
        one from an older state gets the copies too, and stays stale for a page to resync.
        Idempotent; written before the customers, so a backfill cut short between the two finds the
        customers still stale and writes both again."""
        # By _id (the customer's id and each of its tags): an update on ``cid`` scans on the store.
        ops = [
            UpdateOne({"_id": membership_id(doc["_id"], tag), "at": {"$lte": written_at(doc)}}, {"$set": values})
            for doc, values in customers
            if values and doc.get("status") in LISTED
            for tag in dict.fromkeys(doc.get("tags") or [])
        ]
        if not ops:
            return 0
        return (await self.collection.bulk_write(ops, ordered=False)).modified_count

    async def resync(self, customers: AsyncCollection[Document], customer_ids: Sequence[str]) -> None:
        for customer_id in customer_ids:
            await self.sync(await customers.find_one({"_id": customer_id}), customer_id)

    async def resync_pending(self, customers: AsyncCollection[Document]) -> int:
        """Resync the customers a write noted and never cleared (its process died); returns how many."""
        noted = [n["_id"] async for n in self.pending.find({})]
        for customer_id in noted:
            await self.sync(await customers.find_one({"_id": customer_id}), customer_id)
            await self.done(customer_id)
        return len(noted)

    async def rebuild(self, customers: AsyncCollection[Document], version: str) -> int:
        """Once per ``version``: the memberships of every stored customer; returns how many written."""
        marker = f"customer_tags_{version}"
        if await self.migrations.find_one({"_id": marker}) is not None:
            return 0
        # Resumable: at 100k customers this takes minutes, and a start-up probe may restart the
        # process before it ends; the next start goes on after the last customer written.
        progress_id = f"{marker}_progress"
        progress = await self.migrations.find_one({"_id": progress_id})
        after = progress.get("last_id") if progress else None
        written = 0
        batch: list[ReplaceOne[Document]] = []
        projection = {"outbox": 0, "name_grams": 0, "contacts": 0}
        async for doc in customers.find({}, projection=projection).sort("_id", ASCENDING):
            if after is not None and doc["_id"] <= after:
                continue
            batch.extend(
                ReplaceOne({"_id": m["_id"], "at": {"$lte": m["at"]}}, m, upsert=True) for m in memberships_of(doc)
            )
            if len(batch) >= 1000:
                written += await self._write(batch)
                batch = []
                await self.migrations.replace_one(
                    {"_id": progress_id}, {"_id": progress_id, "last_id": doc["_id"]}, upsert=True
                )
        if batch:
            written += await self._write(batch)
        # Memberships of customers that lost a tag, or their listing, while this ran, are
        # caught by every page's check; a customer written meanwhile was synced by its writer.
        with contextlib.suppress(DuplicateKeyError):
            await self.migrations.insert_one({"_id": marker, "memberships": written})
        await self.migrations.delete_one({"_id": progress_id})
        return written
