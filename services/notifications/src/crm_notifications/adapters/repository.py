"""MongoDB collections of the notifications service and their indexes.

Emulator-safe shapes (see the platform notes): worker schedules are epoch-second floats
(``due_ts``), because ``$set`` of a datetime stores a string on the embedded store; a job
that is not waiting has ``due_ts = NEVER`` rather than null, so the one range query the
workers make stays on one index; uniqueness is a unique index on a deterministic key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from crm_platform.clock import Clock
from crm_platform.errors import NotFound
from crm_platform.store import VersionedStore

Document = dict[str, Any]
NEVER = 1e12  # due_ts of a job that waits for nothing (sent, failed, delivered, dead): year 33658


class Repository:
    def __init__(self, db: AsyncDatabase[Document], clock: Clock, wake_relay: Callable[[], None]) -> None:
        self.notifications: AsyncCollection[Document] = db["notifications"]
        self.preferences: AsyncCollection[Document] = db["preferences"]
        self.email_jobs: AsyncCollection[Document] = db["email_jobs"]
        self.webhooks: AsyncCollection[Document] = db["webhooks"]
        self.webhook_health: AsyncCollection[Document] = db["webhook_health"]
        self.deliveries: AsyncCollection[Document] = db["deliveries"]
        self.attempts: AsyncCollection[Document] = db["delivery_attempts"]
        self.users: AsyncCollection[Document] = db["directory_users"]
        self.departments: AsyncCollection[Document] = db["directory_departments"]
        self.webhook_store = VersionedStore(
            self.webhooks,
            clock,
            wake_relay=wake_relay,
            not_found=lambda i: NotFound(f"No webhook subscription with id {i}."),
        )

    async def ensure_indexes(self) -> None:
        await self.notifications.create_indexes(
            [
                # One notification per event and recipient, however often Kafka delivers the event.
                IndexModel([("dedupe_key", ASCENDING)], name="idx_dedupe_key", unique=True, sparse=True),
                IndexModel([("recipient_id", ASCENDING)], name="idx_recipient_id"),
                IndexModel([("recipient_id", ASCENDING), ("read", ASCENDING)], name="recipient_read"),
                IndexModel([("created_ms", DESCENDING)], name="idx_created_ms"),
            ]
        )
        await self.email_jobs.create_indexes([IndexModel([("due_ts", ASCENDING)], name="idx_due_ts")])
        await self.webhooks.create_indexes(
            [
                IndexModel([("owner_id", ASCENDING)], name="idx_owner_id"),
                IndexModel([("status", ASCENDING)], name="idx_status"),
                # Every consumed event reads the active, enabled subscriptions: idx_enabled makes the
                # embedded store compare ``enabled`` as a scalar (not an array test of each row) and
                # status_enabled serves both equalities, so disabled subscriptions are not walked.
                IndexModel([("enabled", ASCENDING)], name="idx_enabled"),
                IndexModel([("status", ASCENDING), ("enabled", ASCENDING)], name="status_enabled"),
            ]
        )
        await self.deliveries.create_indexes(
            [
                # Once per subscription and event (the _id is derived from both, this says it out loud).
                IndexModel([("dedupe_key", ASCENDING)], name="idx_dedupe_key", unique=True, sparse=True),
                IndexModel([("due_ts", ASCENDING)], name="idx_due_ts"),
                IndexModel([("subscription_id", ASCENDING)], name="idx_subscription_id"),
                IndexModel([("created_ms", DESCENDING)], name="idx_created_ms"),
            ]
        )
        await self.attempts.create_indexes([IndexModel([("delivery_id", ASCENDING)], name="idx_delivery_id")])
