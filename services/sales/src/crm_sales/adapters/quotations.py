"""The quotations' collections: ``quotations`` (a :class:`VersionedStore` aggregate whose document
keeps its previous revisions), ``counters`` (one document per year, ``quotation:<year>``, whose
``value`` is the last number given) and ``customers`` (the read copy of the customers service's
customers, fed by ``crm.customers.v1``).

Every query is by ``_id`` (the quotation, the counter, the customer), besides the unique index on
``number`` that makes a number impossible to hold twice, the list's indexes and the quotations of
one customer (``idx_customer_id``, for a merge); pinned by tests/integration/test_quotation_plans.py
and test_quotation_list_plans.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from crm_platform.clock import Clock
from crm_platform.errors import NotFound
from crm_platform.sortkeys import upgrade_sort_keys
from crm_platform.store import VersionedStore
from crm_sales.domain import quotation_list as listing

Document = dict[str, Any]


def quotation_indexes() -> list[IndexModel]:
    return [
        IndexModel([("number", ASCENDING)], name="idx_number", unique=True),
        IndexModel([("customer_id", ASCENDING)], name="idx_customer_id"),
        *list_indexes(),
    ]


def list_indexes() -> list[IndexModel]:
    """The list's: every sort (``s.<key>`` then the id's copy) alone and behind every equality
    filter, so a page and the page after it walk an index in order (see
    application/quotation_list.py); the filters' single-field ``idx_<field>`` make the embedded
    store compare them as scalars (it uses an index only when its name ends in ``_<field>``)."""
    out: list[IndexModel] = []
    for stored in listing.SORT_FIELDS.values():
        key = stored.removeprefix("s.")
        sort = [(stored, ASCENDING), ("s.id", ASCENDING)]
        out.append(IndexModel(sort, name=f"list_{key}"))
        out += [IndexModel([(f, ASCENDING), *sort], name=f"list_{f}_{key}") for f in listing.FILTER_FIELDS]
    out += [IndexModel([(f, ASCENDING)], name=f"idx_{f}") for f in listing.FILTER_FIELDS if f != "customer_id"]
    # The sort copies' own: the embedded store compares a cursor's tie (``s.<key> = v``) as a scalar,
    # which the (s.<key>, s.id) index serves, only when an index of that name exists.
    out += [IndexModel([(f, ASCENDING)], name=f"idx_{f}") for f in (*listing.SORT_FIELDS.values(), "s.valid_day")]
    return out


class QuotationRepository:
    def __init__(self, db: AsyncDatabase[Document], clock: Clock, wake_relay: Callable[[], None]) -> None:
        self.quotations = db["quotations"]
        self.store = VersionedStore(
            self.quotations, clock, wake_relay=wake_relay, not_found=lambda i: NotFound(f"No quotation with id {i}.")
        )
        self.counters = db["counters"]
        self.customers = db["customers"]

    async def ensure_indexes(self) -> None:
        await self.quotations.create_indexes(quotation_indexes())
        # Quotations stored before the list had no sort copies: give them theirs, once.
        await upgrade_sort_keys(self.quotations, listing.sort_keys, listing.SORT_VERSION)

    async def next_number(self, counter_id: str) -> int:
        """The counter's next value (1, 2, ...): one atomic ``$inc`` with upsert, so every caller on
        every replica gets a value of its own, in order, without holes."""
        doc = await self.counters.find_one_and_update(
            {"_id": counter_id}, {"$inc": {"value": 1}}, upsert=True, return_document=ReturnDocument.AFTER
        )
        return int((doc or {}).get("value", 1))

    async def ids_of_customer(self, customer_id: str) -> list[str]:
        """The quotations of one customer (``idx_customer_id``), for a merge."""
        return [str(d["_id"]) async for d in self.quotations.find({"customer_id": customer_id}, projection={"_id": 1})]

    async def get(self, quotation_id: str) -> Document | None:
        return await self.quotations.find_one({"_id": quotation_id}, projection={"outbox": 0})
