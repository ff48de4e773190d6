"""The assignment rules' collections: the rules and the pool settings (aggregates with an outbox),
each rule's round-robin turn counter and each user's assignment lease (documents by ``_id``).

Why these shapes: a round-robin turn is one atomic ``$inc`` of a counter document by ``_id``,
so two replicas never hand out the same turn; a user's open leads are counted from the leads'
``open_status`` index (owner, deleted, status: a plan test pins it) while the caller holds the
user's lease (a conditional update by ``_id``), so two runs at once never both see room for the
last slot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from crm_leads.domain.assignment import OPEN_STATUSES
from crm_platform.clock import Clock
from crm_platform.errors import NotFound
from crm_platform.store import VersionedStore

Document = dict[str, Any]
POOL_SETTINGS_ID = "pool"
#: The most open leads counted for one user (a rule without a capacity compares loads up to here).
COUNT_CAP = 10_000


class AssignmentRepository:
    def __init__(self, db: AsyncDatabase[Document], clock: Clock, wake_relay: Callable[[], None]) -> None:
        self.leads = db["leads"]
        self.rules = db["assignment_rules"]
        self.rule_store = VersionedStore(
            self.rules, clock, wake_relay=wake_relay, not_found=lambda i: NotFound(f"No assignment rule with id {i}.")
        )
        self.settings = db["lead_settings"]
        self.settings_store = VersionedStore(self.settings, clock, wake_relay=wake_relay)
        self.turns = db["assignment_turns"]
        self.leases = db["assignment_leases"]
        self.departments = db["directory_departments"]
        self.users = db["directory_users"]

    async def ensure_indexes(self) -> None:
        await self.rules.create_indexes([IndexModel([("live", ASCENDING)], name="idx_live")])

    async def live_rules(self) -> list[Document]:
        """Every rule not deleted (few: an organisation has tens, not thousands)."""
        return [doc async for doc in self.rules.find({"live": True}, {"outbox": 0}).limit(1000)]

    async def pool_settings(self) -> Document | None:
        return await self.settings.find_one({"_id": POOL_SETTINGS_ID})

    async def next_turn(self, rule_id: str) -> int:
        """The rule's next round-robin turn (0, 1, 2, ...): one atomic increment, so every caller
        on every replica gets a turn of its own."""
        doc = await self.turns.find_one_and_update(
            {"_id": rule_id}, {"$inc": {"n": 1}}, upsert=True, return_document=ReturnDocument.AFTER
        )
        return int((doc or {}).get("n", 1)) - 1

    async def open_leads(self, user_id: str, up_to: int = COUNT_CAP) -> int:
        """The open leads (new, contacted, qualified) ``user_id`` owns, counted up to ``up_to`` (a capacity
        needs no more): per status an index range of ``open_status`` read for ids only, so the cost
        follows the user's own leads, never the collection (the store's ``count`` command and
        ``count_documents`` read every lead here)."""
        total = 0
        for status in OPEN_STATUSES:
            query = {"owner_id": user_id, "deleted": False, "status": status}
            async for _ in self.leads.find(query, {"_id": 1}).limit(max(up_to - total, 1)):
                total += 1
            if total >= up_to:
                break
        return total

    async def take_lease(self, user_id: str, holder: str, now_ms: int, ttl_ms: int) -> bool:
        """Hold ``user_id``'s assignment lease until ``now_ms + ttl_ms`` unless someone else holds it."""
        until = now_ms + ttl_ms
        taken = await self.leases.find_one_and_update(
            {"_id": user_id, "until": {"$lt": now_ms}}, {"$set": {"until": until, "holder": holder}}
        )
        if taken is not None:
            return True
        try:
            await self.leases.insert_one({"_id": user_id, "until": until, "holder": holder})
        except DuplicateKeyError:
            return False
        return True

    async def drop_lease(self, user_id: str, holder: str) -> None:
        await self.leases.update_one({"_id": user_id, "holder": holder}, {"$set": {"until": 0}})

    async def department(self, department_id: str) -> Document | None:
        return await self.departments.find_one({"_id": department_id})

    async def user(self, user_id: str) -> Document | None:
        return await self.users.find_one({"_id": user_id})
