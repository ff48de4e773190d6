"""Rebuilds requested over HTTP: one at a time across replicas, run in the background, with a status.

A rebuild takes minutes at scale, so ``POST`` answers 202 with the job and the work runs
in the background of the replica that took it. One rebuild at a time: the job holds a
lease document (``_id: "running"``) that another replica's request finds (409 naming the
job), until the job ends or its lease runs out (a replica that died mid-rebuild does not
block the next one for ever). While a rebuild runs, the scheduler skips its runs: half-built
clocks would warn customers whose follow-ups have not been replayed yet.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import structlog
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from crm_platform.clock import Clock
from crm_platform.errors import Conflict, NotFound
from crm_pool.domain.recycling import epoch_ms

log = structlog.get_logger(__name__)
Document = dict[str, Any]
LOCK_ID = "running"


class Rebuilds:
    def __init__(
        self,
        jobs: AsyncCollection[Document],
        clock: Clock,
        rebuild: Callable[[], Awaitable[int]],
        lease_seconds: float,
    ) -> None:
        self.jobs = jobs
        self.clock = clock
        self._rebuild = rebuild
        self._lease = timedelta(seconds=lease_seconds)
        self._tasks: set[asyncio.Task[None]] = set()

    async def begin(self, requested_by: str) -> Document:
        """Take the lease and start the rebuild in the background; Conflict if one is running."""
        now = self.clock.now()
        rebuild_id = str(uuid.uuid4())
        lock = {"_id": LOCK_ID, "rebuild_id": rebuild_id, "expires_at_ms": epoch_ms(now + self._lease)}
        if not await self._take(lock, now):
            current = await self.jobs.find_one({"_id": LOCK_ID}) or {}
            raise Conflict(
                "A rebuild is already running; wait for it to finish.",
                extra={"rebuild_id": current.get("rebuild_id")},
            )
        job = {
            "_id": rebuild_id,
            "rebuild_id": rebuild_id,
            "status": "running",
            "requested_by": requested_by,
            "started_at": now,
            "finished_at": None,
            "clocks": None,
            "error": None,
        }
        await self.jobs.insert_one(job)
        task = asyncio.create_task(self._run(rebuild_id), name=f"pool-rebuild-{rebuild_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _take(self, lock: Document, now: Any) -> bool:
        try:
            await self.jobs.insert_one(lock)
            return True
        except DuplicateKeyError:
            # Taken over only if the holder's lease ran out (it died mid-rebuild), guarded by its id.
            held = await self.jobs.find_one({"_id": LOCK_ID})
            if held is None or int(held.get("expires_at_ms", 0)) > epoch_ms(now):
                return False
            result = await self.jobs.replace_one({"_id": LOCK_ID, "rebuild_id": held["rebuild_id"]}, lock)
            return bool(result.matched_count)

    async def _run(self, rebuild_id: str) -> None:
        outcome: Document = {"status": "cancelled", "error": "the service stopped during the rebuild"}
        try:
            count = await self._rebuild()
            outcome = {"status": "succeeded", "clocks": count}
            log.info("pool rebuild finished", rebuild_id=rebuild_id, clocks=count)
        except Exception as exc:  # reported on the job; the clocks are whatever the replay reached
            outcome = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
            log.error("pool rebuild failed", rebuild_id=rebuild_id, error=str(exc))
        finally:
            job = await self.jobs.find_one({"_id": rebuild_id})
            if job is not None:  # whole document: $set of a datetime is a string on the embedded store
                await self.jobs.replace_one({"_id": rebuild_id}, {**job, **outcome, "finished_at": self.clock.now()})
            await self.jobs.delete_one({"_id": LOCK_ID, "rebuild_id": rebuild_id})

    async def get(self, rebuild_id: str) -> Document:
        job = await self.jobs.find_one({"_id": rebuild_id}) if rebuild_id != LOCK_ID else None
        if job is None:
            raise NotFound(f"No rebuild with id {rebuild_id}.")
        if job["status"] == "running" and not await self._holds_lease(rebuild_id):
            job["status"] = "abandoned"  # its replica stopped before the end: start another one
        return job

    async def _holds_lease(self, rebuild_id: str) -> bool:
        return self._live(await self.jobs.find_one({"_id": LOCK_ID, "rebuild_id": rebuild_id}))

    async def in_progress(self) -> bool:
        return self._live(await self.jobs.find_one({"_id": LOCK_ID}))

    def _live(self, lock: Document | None) -> bool:
        return lock is not None and int(lock.get("expires_at_ms", 0)) > epoch_ms(self.clock.now())

    async def settle(self) -> None:
        """Wait for the rebuilds this replica runs (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # As a background component of the service: nothing to start; stopping cancels a running
    # rebuild (its job then reads "abandoned" once the lease is released or runs out).
    def start(self) -> None:
        return None

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
