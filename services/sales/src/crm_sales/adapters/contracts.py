"""The contracts' collections: ``contracts`` (a :class:`VersionedStore` aggregate whose document
holds its approval, payment plan, payments, refunds and invoices), ``counters`` (shared with the
quotations: ``contract:<year>`` and ``invoice:<year>``, whose ``value`` is the last number given)
and ``opportunities`` (the read copy of the pipeline's opportunities, fed by ``crm.pipeline.v1``).

The list (``GET /v1/contracts``) filters on ``customer_id``, ``status`` and ``owner_id`` and the
caller's visibility (owner, department path), sorted on the creation time: one index per
combination, each ``(live, <filters...>, s.created, s.id)``; pinned by
tests/integration/test_contract_plans.py.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations
from typing import Any

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from crm_platform.clock import Clock
from crm_platform.errors import NotFound
from crm_platform.store import VersionedStore

Document = dict[str, Any]

#: Equality filters of the list, in index order; visibility adds owner_id or department_path.
LIST_FIELDS = ("customer_id", "status", "owner_id", "department_path")


def contract_indexes() -> list[IndexModel]:
    sort = [("s.created", ASCENDING), ("s.id", ASCENDING)]
    out = [IndexModel([("live", ASCENDING), *sort], name="live_created")]
    for size in range(1, len(LIST_FIELDS) + 1):
        for fields in combinations(LIST_FIELDS, size):
            if "owner_id" in fields and "department_path" in fields:
                continue  # visibility is one or the other, never both
            out.append(
                IndexModel(
                    [("live", ASCENDING), *((f, ASCENDING) for f in fields), *sort],
                    name=f"live_{'_'.join(fields)}_created",
                )
            )
    out.append(IndexModel([("number", ASCENDING)], name="idx_number", unique=True))
    # Named idx_<field>: the embedded store's planner then knows the field is a scalar and turns an
    # equality on it into one the compound indexes above serve (not an array test of every row).
    out += [IndexModel([(f, ASCENDING)], name=f"idx_{f}") for f in ("live", *LIST_FIELDS)]
    # And the sort key's own: a cursor's tie branch (``s.created = v``) is then compared as a scalar
    # the (…, s.created, s.id) indexes serve, not as an array test of every live contract (2–3 s
    # for page 10 of an administrator's list at 50k contracts).
    out.append(IndexModel([("s.created", ASCENDING)], name="idx_s.created"))
    # The overdue scheduler's look-up: an integer day (null when nothing is left to report).
    out.append(IndexModel([("next_due_day", ASCENDING)], name="idx_next_due_day"))
    return out


class ContractRepository:
    def __init__(self, db: AsyncDatabase[Document], clock: Clock, wake_relay: Callable[[], None]) -> None:
        self.contracts = db["contracts"]
        self.store = VersionedStore(
            self.contracts, clock, wake_relay=wake_relay, not_found=lambda i: NotFound(f"No contract with id {i}.")
        )
        self.counters = db["counters"]
        self.opportunities = db["opportunities"]

    async def ensure_indexes(self) -> None:
        await self.contracts.create_indexes(contract_indexes())

    async def next_number(self, counter_id: str) -> int:
        """The counter's next value (1, 2, ...): one atomic ``$inc`` with upsert (as the quotations')."""
        doc = await self.counters.find_one_and_update(
            {"_id": counter_id}, {"$inc": {"value": 1}}, upsert=True, return_document=ReturnDocument.AFTER
        )
        return int((doc or {}).get("value", 1))

    async def overdue_contracts(self, today_day: int, limit: int) -> list[str]:
        """Contracts with an instalment due before ``today_day`` not yet reported, oldest first."""
        cursor = (
            self.contracts.find({"next_due_day": {"$lt": today_day}}, projection={"_id": 1})
            .sort([("next_due_day", ASCENDING)])
            .limit(limit)
        )
        return [d["_id"] async for d in cursor]

    async def ids_of_customer(self, customer_id: str) -> list[str]:
        """The contracts of one customer (``idx_customer_id``), for a merge."""
        return [str(d["_id"]) async for d in self.contracts.find({"customer_id": customer_id}, projection={"_id": 1})]

    async def get(self, contract_id: str) -> Document | None:
        return await self.contracts.find_one({"_id": contract_id}, projection={"outbox": 0})
