"""The quotations' collections: ``quotations`` (a :class:`VersionedStore` aggregate whose document
keeps its previous revisions), ``counters`` (one document per year, ``quotation:<year>``, whose
``value`` is the last number given) and ``customers`` (the read copy of the customers service's
customers, fed by ``crm.customers.v1``).

Every query is by ``_id`` (the quotation, the counter, the customer), besides the unique index on
``number`` that makes a number impossible to hold twice; pinned by
tests/integration/test_quotation_plans.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from crm_platform.clock import Clock
from crm_platform.errors import NotFound
from crm_platform.store import VersionedStore

Document = dict[str, Any]


def quotation_indexes() -> list[IndexModel]:
    return [
        IndexModel([("number", ASCENDING)], name="idx_number", unique=True),
        IndexModel([("customer_id", ASCENDING)], name="idx_customer_id"),
    ]


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

    async def next_number(self, counter_id: str) -> int:
        """The counter's next value (1, 2, ...): one atomic ``$inc`` with upsert, so every caller on
        every replica gets a value of its own, in order, without holes."""
        doc = await self.counters.find_one_and_update(
            {"_id": counter_id}, {"$inc": {"value": 1}}, upsert=True, return_document=ReturnDocument.AFTER
        )
        return int((doc or {}).get("value", 1))

    async def get(self, quotation_id: str) -> Document | None:
        return await self.quotations.find_one({"_id": quotation_id}, projection={"outbox": 0})
