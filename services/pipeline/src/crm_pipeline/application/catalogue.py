"""The pipeline's read copy of the sales service's catalogue, fed only by ``crm.sales.v1``.

* ``sales_products``: each product's snapshot (id, SKU, name, unit, active ...), replaced whole
  by every ``crm.product.*`` event, applied by ``aggregateversion`` (apply_versioned).
* ``sales_price_lists``: each price list's header (currency, tier, validity, active) and its
  entries as a map ``entries.<product_id> = {unit_price, min_quantity}``. Every
  ``crm.price_list.*`` event carries the header; an entry event sets or unsets one entry too.
  One guarded update per event: ``{_id, source_version < v}``, so a stale or repeated event
  matches nothing and its upsert collides on ``_id`` (read as "already applied").

``crm rebuild-copies pipeline`` drops and refills both from the topic like the pipeline's other
read copies (``rebuild_parts``).

Line items read products by ``_id`` and price lists by ``currency`` (index ``idx_currency``);
the lists of one currency are few, so tier and validity are chosen in memory (domain.lines).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from crm_platform.consumer import Handler, apply_versioned
from crm_platform.contracts import sales as ev
from crm_platform.events import EventEnvelope, registry

Document = dict[str, Any]

PRODUCTS = "sales_products"
PRICE_LISTS = "sales_price_lists"


class Catalogue:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.products: AsyncCollection[Document] = db[PRODUCTS]
        self.price_lists: AsyncCollection[Document] = db[PRICE_LISTS]

    def rebuild_parts(self) -> tuple[Catalogue, str, list[AsyncCollection[Document]]]:
        """For ``crm rebuild-copies pipeline`` (crm_platform.readmodels.rebuild): the copy has no
        hooks, so it refills itself; its topic and its two collections."""
        return self, ev.TOPIC, [self.products, self.price_lists]

    async def ensure_indexes(self) -> None:
        # Named idx_<field>: the embedded store's planner uses a single-field index only then.
        await self.price_lists.create_indexes([IndexModel([("currency", ASCENDING)], name="idx_currency")])

    def handlers(self) -> Mapping[str, Handler]:
        """One handler per event type of the topic (from the contracts, so new types are taken too)."""
        return {t.name: self.apply for t in registry.for_topic(ev.TOPIC)}

    async def apply(self, envelope: EventEnvelope) -> None:
        await self.store(envelope)

    async def store(self, envelope: EventEnvelope) -> bool:
        """Apply one event; False if the copy already had this version or a newer one."""
        if envelope.type.startswith("crm.product."):
            product = ev.ProductSnapshot.model_validate(envelope.data["product"])
            state = {"_id": product.product_id, **product.model_dump(mode="json")}
            return await apply_versioned(self.products, envelope, state)
        if envelope.type.startswith("crm.price_list."):
            return await self._price_list(envelope)
        return False

    async def _price_list(self, envelope: EventEnvelope) -> bool:
        header = ev.PriceListSnapshot.model_validate(envelope.data["price_list"])
        update: Document = {
            "$set": {
                **header.model_dump(mode="json"),
                "source_version": envelope.aggregateversion,
                "source_event_id": envelope.id,
            }
        }
        if envelope.type == ev.PRICE_LIST_ENTRY_SET.name:
            entry = ev.PriceEntry.model_validate(envelope.data["entry"])
            update["$set"][f"entries.{entry.product_id}"] = {
                "unit_price": entry.unit_price,
                "min_quantity": entry.min_quantity,
            }
        elif envelope.type == ev.PRICE_LIST_ENTRY_REMOVED.name:
            entry = ev.PriceEntry.model_validate(envelope.data["entry"])
            update["$unset"] = {f"entries.{entry.product_id}": ""}
        try:
            result = await self.price_lists.update_one(
                {"_id": header.price_list_id, "source_version": {"$lt": envelope.aggregateversion}},
                update,
                upsert=True,
            )
        except DuplicateKeyError:
            return False  # this version or a newer one is there: stale or repeated
        return result.matched_count > 0 or result.upserted_id is not None

    # --- what line items read ---------------------------------------------------------------------

    async def products_by_id(self, product_ids: set[str]) -> dict[str, Document]:
        if not product_ids:
            return {}
        found = self.products.find({"_id": {"$in": sorted(product_ids)}})
        return {d["_id"]: d async for d in found}

    async def price_lists_in(self, currency: str) -> list[Document]:
        return [d async for d in self.price_lists.find({"currency": currency})]
