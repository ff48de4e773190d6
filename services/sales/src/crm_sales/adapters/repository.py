"""The sales service's collections and their indexes.

``products`` and ``price_lists`` are aggregates written only through a :class:`VersionedStore`
(state, version and outbox events in one guarded write). Every query a list page or a price look-up
makes is served by an index (pinned by tests/integration/test_query_plans.py): the list indexes
start with ``live`` (always true, so an unfiltered page walks an index too), then an optional
equality filter, then the sort key and the id copy ``s.id``; single fields are indexed under the
name ``idx_<field>``, the only name the embedded store's planner turns an equality into an
indexable comparison for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from crm_platform.clock import Clock
from crm_platform.errors import NotFound
from crm_platform.store import VersionedStore
from crm_sales.domain import price_lists, products

Document = dict[str, Any]

#: Equality filters of the product list (``q`` is a range on the name or SKU copy, see below).
PRODUCT_FILTERS: tuple[tuple[str, ...], ...] = (("category",), ("active",), ("category", "active"))
PRICE_LIST_FILTERS: tuple[tuple[str, ...], ...] = (("currency",), ("tier",), ("active",), ("currency", "tier"))


def _list_indexes(sort_fields: dict[str, str], filters: tuple[tuple[str, ...], ...]) -> list[IndexModel]:
    out: list[IndexModel] = []
    for stored in sort_fields.values():
        key = stored.removeprefix("s.")
        sort = [(stored, ASCENDING), ("s.id", ASCENDING)]
        out.append(IndexModel([("live", ASCENDING), *sort], name=f"live_{key}"))
        for fields in filters:
            out.append(
                IndexModel(
                    [("live", ASCENDING), *((f, ASCENDING) for f in fields), *sort],
                    name=f"live_{'_'.join(fields)}_{key}",
                )
            )
    return out


def _sort_key_indexes(sort_fields: dict[str, str]) -> list[IndexModel]:
    """The sort keys' own ``idx_<field>``: a cursor's tie branch (``s.name = v``) is then a scalar
    comparison the list indexes serve, not an array test of every live row the walk finds."""
    return [IndexModel([(stored, ASCENDING)], name=f"idx_{stored}") for stored in sort_fields.values()]


def product_indexes() -> list[IndexModel]:
    out = _list_indexes(products.SORT_FIELDS, PRODUCT_FILTERS)
    # The SKU is unique in the organisation: the index decides between two writers racing.
    out.append(IndexModel([("sku", ASCENDING)], name="idx_sku", unique=True))
    out += [IndexModel([(f, ASCENDING)], name=f"idx_{f}") for f in ("live", "category", "active")]
    out += _sort_key_indexes(products.SORT_FIELDS)
    return out


def price_list_indexes() -> list[IndexModel]:
    out = _list_indexes(price_lists.SORT_FIELDS, PRICE_LIST_FILTERS)
    # The price look-up: the active lists of one currency and tier.
    out.append(
        IndexModel([("currency", ASCENDING), ("tier", ASCENDING), ("active", ASCENDING)], name="lookup_currency_tier")
    )
    out += [IndexModel([(f, ASCENDING)], name=f"idx_{f}") for f in ("live", "currency", "tier", "active")]
    out += _sort_key_indexes(price_lists.SORT_FIELDS)
    return out


class SalesRepository:
    def __init__(self, db: AsyncDatabase[Document], clock: Clock, wake_relay: Callable[[], None]) -> None:
        self.products = db["products"]
        self.product_store = VersionedStore(
            self.products, clock, wake_relay=wake_relay, not_found=lambda i: NotFound(f"No product with id {i}.")
        )
        self.price_lists = db["price_lists"]
        self.price_list_store = VersionedStore(
            self.price_lists,
            clock,
            wake_relay=wake_relay,
            not_found=lambda i: NotFound(f"No price list with id {i}."),
        )

    async def ensure_indexes(self) -> None:
        await self.products.create_indexes(product_indexes())
        await self.price_lists.create_indexes(price_list_indexes())

    async def product_by_sku(self, sku: str) -> Document | None:
        return await self.products.find_one({"sku": sku}, projection={"outbox": 0})

    async def price_lists_for(self, currency: str, tier: str, product_id: str) -> list[Document]:
        """The active lists of ``currency`` and ``tier`` ("" for the default lists), each with its
        header and only the entry of ``product_id``."""
        projection = {
            "name": 1,
            "currency": 1,
            "tier": 1,
            "active": 1,
            "valid_from": 1,
            "valid_to": 1,
            "created_at": 1,
            f"entries.{product_id}": 1,
        }
        query = {"currency": currency, "tier": tier, "active": True}
        found: list[Document] = []
        async for doc in self.price_lists.find(query, projection=projection):
            # MongoDB answers the dotted projection nested ({"entries": {id: entry}}); the embedded
            # store answers it under the dotted name itself ({"entries.<id>": entry}): take both.
            flat = doc.pop(f"entries.{product_id}", None)
            entries = doc.get("entries") if isinstance(doc.get("entries"), dict) else {}
            doc["entries"] = {product_id: flat} if flat is not None else entries
            found.append(doc)
        return found
