"""One rebuild at a time across every replica and the command line.

A rebuild replays every topic into a new generation and switches to it; two at once would
replay twice and could write into a generation the other already dropped. The lease is
one document (``_id: "running"``) taken by an insert, renewed while the rebuild runs, and
given back when it ends; a holder that died (its replica scaled down mid-rebuild) stops
renewing, and once its lease has run out the next rebuild takes it over, guarded by the
holder it read, so of two taking over at once one wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from crm_platform.errors import Conflict
from crm_platform.tasks import cancel_and_wait

Document = dict[str, Any]
LOCK_ID = "running"


def _now_ms() -> int:
    return int(time.time() * 1000)


class RebuildLease:
    def __init__(self, db: AsyncDatabase[Document], holder: str, seconds: float) -> None:
        self._locks = db["rebuild_lock"]
        self.holder = holder
        self._seconds = seconds
        self._renewer: asyncio.Task[None] | None = None

    @classmethod
    async def acquire(cls, db: AsyncDatabase[Document], seconds: float = 60.0) -> RebuildLease:
        """Take the lease, or raise Conflict (409) naming the rebuild that holds it."""
        lease = cls(db, f"rebuild-{uuid.uuid4().hex[:12]}", seconds)
        doc = {"_id": LOCK_ID, "holder": lease.holder, "started_ms": _now_ms(), "expires_ms": lease._expiry()}
        try:
            await lease._locks.insert_one(doc)
        except DuplicateKeyError:
            current = await lease._locks.find_one({"_id": LOCK_ID}) or {}
            if int(current.get("expires_ms", 0)) >= _now_ms():
                raise Conflict(
                    f"A rebuild is already running ({current.get('holder')}).",
                    extra={"rebuild": current.get("holder")},
                ) from None
            taken = await lease._locks.replace_one(
                {"_id": LOCK_ID, "holder": current.get("holder"), "expires_ms": current.get("expires_ms")},
                {key: value for key, value in doc.items() if key != "_id"},
            )
            if not taken.matched_count:
                raise Conflict("Another rebuild started just now.") from None
        lease._renewer = asyncio.create_task(lease._renew(), name="rebuild-lease")
        return lease

    def _expiry(self) -> int:
        return _now_ms() + int(self._seconds * 1000)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self._seconds / 3)
            with contextlib.suppress(Exception):  # a missed renewal is retried; the lease has slack
                await self._locks.update_one(
                    {"_id": LOCK_ID, "holder": self.holder}, {"$set": {"expires_ms": self._expiry()}}
                )

    async def release(self) -> None:
        if self._renewer is not None:
            await cancel_and_wait(self._renewer)
        await self._locks.delete_one({"_id": LOCK_ID, "holder": self.holder})

    @staticmethod
    async def running(db: AsyncDatabase[Document]) -> Document | None:
        """The rebuild holding the lease now, if any (on whichever replica or command line)."""
        doc = await db["rebuild_lock"].find_one({"_id": LOCK_ID})
        if doc is None or int(doc.get("expires_ms", 0)) < _now_ms():
            return None
        return doc
