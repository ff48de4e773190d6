"""The tickets' collection: ``tickets`` (a :class:`VersionedStore` aggregate: state, version and
outbox in one guarded write). Numbers come from the quotations' ``counters`` collection
(``ticket:<year>``, the same atomic ``$inc``); customers from the service's read copy.

Every list page is an index walk: ``live`` (always true), an optional equality filter, then the
sort's keys and the id copy: ``s.opened_at`` (newest first), ``s.resolution_due_at`` (what breaks
next) or ``s.priority`` (rank, urgent 0) and ``s.resolution_due_at``; then ``s.id``. The
visibility of a caller (assignee, opener, department or subtree) is a ``$or`` that the listing
runs as one indexed query per branch, each served by the index of its own field. The
scheduler's poll is a range on ``s.check_at``. Pinned by tests/integration/test_ticket_plans.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from crm_platform.clock import Clock
from crm_platform.errors import NotFound
from crm_platform.sortkeys import epoch_ms
from crm_platform.store import VersionedStore
from crm_sales.domain.tickets import PRIORITIES

Document = dict[str, Any]

#: Equality filters of the list (and the visibility branches: owner, opener, department).
FILTERS = ("status", "priority", "owner_id", "customer_id", "breached", "created_by", "department_path")


def ticket_indexes() -> list[IndexModel]:
    sort = [("s.opened_at", ASCENDING), ("s.id", ASCENDING)]
    out = [IndexModel([("live", ASCENDING), *sort], name="live_opened_at")]
    out += [IndexModel([("live", ASCENDING), (f, ASCENDING), *sort], name=f"live_{f}_opened_at") for f in FILTERS]
    # The other sorts of the list (domain.tickets.SORTS), each with every filter before it.
    for name, keys in (
        ("resolution_due", ["s.resolution_due_at"]),
        ("priority", ["s.priority", "s.resolution_due_at"]),
    ):
        order = [*((k, ASCENDING) for k in keys), ("s.id", ASCENDING)]
        out.append(IndexModel([("live", ASCENDING), *order], name=f"live_by_{name}"))
        out += [IndexModel([("live", ASCENDING), (f, ASCENDING), *order], name=f"live_{f}_by_{name}") for f in FILTERS]
    # The embedded store's planner turns an equality into an indexable comparison only for a field
    # with a single-field index named idx_<field> (it then knows the field holds no array).
    out += [IndexModel([(f, ASCENDING)], name=f"idx_{f}") for f in ("live", *FILTERS)]
    # So for the sort keys: a cursor's tie branch (``s.opened_at = v``) is then a scalar comparison
    # the sort indexes serve, not an array test of every live ticket.
    out += [IndexModel([(k, ASCENDING)], name=f"idx_{k}") for k in ("s.opened_at", "s.resolution_due_at", "s.priority")]
    out.append(IndexModel([("number", ASCENDING)], name="idx_number", unique=True))
    out.append(IndexModel([("feedback_id", ASCENDING)], name="idx_feedback_id"))
    out.append(IndexModel([("s.check_at", ASCENDING)], name="s_check_at"))
    return out


class TicketRepository:
    def __init__(self, db: AsyncDatabase[Document], clock: Clock, wake_relay: Callable[[], None]) -> None:
        self.tickets = db["tickets"]
        self.store = VersionedStore(
            self.tickets, clock, wake_relay=wake_relay, not_found=lambda i: NotFound(f"No ticket with id {i}.")
        )
        self.counters = db["counters"]

    async def ensure_indexes(self) -> None:
        await self.tickets.create_indexes(ticket_indexes())
        # Tickets stored before the priority sort existed get its key (one indexed update per priority).
        for rank, priority in enumerate(PRIORITIES):
            await self.tickets.update_many(
                {"priority": priority, "s.priority": {"$exists": False}}, {"$set": {"s.priority": rank}}
            )

    async def get(self, ticket_id: str) -> Document | None:
        return await self.tickets.find_one({"_id": ticket_id}, projection={"outbox": 0})

    async def ids_of_customer(self, customer_id: str) -> list[str]:
        """The tickets of one customer (``idx_customer_id``), for a merge."""
        return [str(d["_id"]) async for d in self.tickets.find({"customer_id": customer_id}, projection={"_id": 1})]

    async def due(self, now: datetime, limit: int) -> list[str]:
        """Tickets with an escalation or a breach whose moment has come (an index range)."""
        cursor = (
            self.tickets.find({"s.check_at": {"$lte": epoch_ms(now)}}, projection={"_id": 1})
            .sort([("s.check_at", ASCENDING)])
            .limit(limit)
        )
        return [d["_id"] async for d in cursor]
