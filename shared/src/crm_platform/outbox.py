"""The transactional outbox, single-document.

A state change and the events it causes are one atomic MongoDB write: the new
state, the bumped version and the events appended to the document's ``outbox``
array are written by one replace guarded by the version the writer read (see
:mod:`crm_platform.store`). We replace whole documents rather than use update
operators because the embedded store mishandles several of them (``$push`` turns
array elements into strings, ``$set``/``$min`` of a date store a string), while a
guarded replace behaves the same on it and on MongoDB. ``outbox_pending_since``
is a top-level, indexed field so the relay finds pending aggregates without
querying inside the array.

The relay leases one aggregate at a time (a conditional update, so several
replicas never publish the same aggregate at once), appends its events to the
service's event log (the history the API shows; idempotent on the event id),
publishes them in order keyed by the aggregate id, then removes them from the
outbox with a guarded replace. Every relay write bumps ``outbox_rev``, which
writers also guard on, so a writer holding an older read retries instead of
putting published events back. The relay is woken right after a write and polls
as a fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, PyMongoError

from crm_platform.clock import Clock, as_utc
from crm_platform.events import EventEnvelope, to_kafka
from crm_platform.listing import count
from crm_platform.metrics import OUTBOX_LAG, OUTBOX_PUBLISHED, OUTBOX_RELAY_ERRORS

log = structlog.get_logger(__name__)

Document = dict[str, Any]
# (topic, key, value, headers) -> awaitable that resolves once the broker acknowledged
Publish = Callable[[str, bytes, bytes, dict[str, str]], Awaitable[Awaitable[Any]]]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PENDING = "outbox_pending_since"  # a datetime: the oldest unpublished event's write
REV = "outbox_rev"  # bumped by the relay, so a writer holding an older read retries
LEASE = "outbox_lease_until"  # epoch seconds (a number: comparable on every store)
LEASE_OWNER = "outbox_lease_owner"


def outbox_entries(events: Sequence[tuple[str, EventEnvelope]]) -> list[Document]:
    """Outbox array entries for (topic, envelope) pairs."""
    return [{"topic": topic, "envelope": env.model_dump(mode="json")} for topic, env in events]


BOOKKEEPING = ("outbox", REV, PENDING, LEASE, LEASE_OWNER)


async def ensure_outbox_indexes(collection: AsyncCollection[Document]) -> None:
    # The embedded store uses a single-field index only if its name ends in _<field>.
    await collection.create_index([(PENDING, ASCENDING)], name=f"idx_{PENDING}", sparse=True)


async def ensure_event_log_indexes(event_log: AsyncCollection[Document]) -> None:
    await event_log.create_index([("subject", ASCENDING), ("time", ASCENDING)], name="subject_time")


class OutboxRelay:
    """Publishes what the outboxes of the given collections hold."""

    def __init__(
        self,
        collections: Sequence[AsyncCollection[Document]],
        publish: Publish,
        clock: Clock,
        *,
        event_log: AsyncCollection[Document] | None = None,
        lease_seconds: float = 30.0,
        poll_seconds: float = 1.0,
        batch_size: int = 200,
        concurrency: int = 32,
    ) -> None:
        self._collections = list(collections)
        self._publish = publish
        self._clock = clock
        self._event_log = event_log
        self._lease = timedelta(seconds=lease_seconds)
        self._poll_seconds = poll_seconds
        self._batch_size = batch_size
        self._semaphore = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._owner = uuid.uuid4().hex
        self.last_error: str | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        backoff = self._poll_seconds
        while True:
            self._wake.clear()
            try:
                published = await self.drain()
                self.last_error = None
                backoff = self._poll_seconds
                if published:
                    continue  # more may have arrived while we published
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker or the store is down: keep the events, retry later
                self.last_error = f"{type(exc).__name__}: {exc}"
                OUTBOX_RELAY_ERRORS.inc()
                log.warning("outbox relay failed; will retry", error=self.last_error, retry_in=backoff)
                backoff = min(backoff * 2, 30.0)
                await asyncio.sleep(backoff)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_seconds)

    async def drain(self) -> int:
        """Publish everything pending now; returns how many events went out."""
        total = 0
        for collection in self._collections:
            while True:
                now = self._clock.now()
                # Only the indexed marker in the query (an $or on the lease made the embedded
                # store scan the collection every poll); leases are checked on the few pending
                # rows, reading past those another replica holds.
                pending = collection.find({PENDING: {"$lte": now}}, projection={"_id": 1, LEASE: 1})
                rows = [d async for d in pending.sort(PENDING, ASCENDING).limit(self._batch_size * 4)]
                free = [d["_id"] for d in rows if d.get(LEASE) is None or d[LEASE] < now.timestamp()]
                candidates = free[: self._batch_size]
                if not candidates:
                    break
                counts = await asyncio.gather(*(self._relay_one(collection, c) for c in candidates))
                total += sum(counts)
        return total

    async def _relay_one(self, collection: AsyncCollection[Document], aggregate_id: Any) -> int:
        async with self._semaphore:
            now = self._clock.now().timestamp()
            leased = await collection.find_one_and_update(
                {
                    "_id": aggregate_id,
                    PENDING: {"$exists": True},
                    "$or": [{LEASE: {"$exists": False}}, {LEASE: {"$lt": now}}],
                },
                {"$set": {LEASE: now + self._lease.total_seconds(), LEASE_OWNER: self._owner}, "$inc": {REV: 1}},
                return_document=ReturnDocument.AFTER,
            )
            if leased is None:
                return 0  # another replica has it, or it was drained meanwhile
            entries: list[Document] = leased.get("outbox") or []
            try:
                if entries:
                    await self._archive(entries)
                    await self._send(entries)
            except BaseException:
                await collection.update_one(
                    {"_id": aggregate_id, LEASE_OWNER: self._owner},
                    {"$unset": {LEASE: "", LEASE_OWNER: ""}, "$inc": {REV: 1}},
                )
                raise
            await self._remove_published(collection, leased, {e["envelope"]["id"] for e in entries})
            return len(entries)

    async def _remove_published(
        self, collection: AsyncCollection[Document], doc: Document, published: set[str]
    ) -> None:
        """Drop what we published from the outbox with a guarded replace (writers may append meanwhile)."""
        current: Document | None = doc
        while current is not None:
            remaining = [e for e in current.get("outbox") or [] if e["envelope"]["id"] not in published]
            replacement = {k: v for k, v in current.items() if k not in (LEASE, LEASE_OWNER)}
            replacement["outbox"] = remaining
            replacement[REV] = current.get(REV, 0) + 1
            if not remaining:
                replacement.pop(PENDING, None)
            result = await collection.replace_one(
                {"_id": current["_id"], "version": current.get("version"), REV: current.get(REV, 0)}, replacement
            )
            if result.matched_count:
                return
            current = await collection.find_one({"_id": current["_id"]})

    async def _archive(self, entries: list[Document]) -> None:
        if self._event_log is None:
            return
        docs = [{**e["envelope"], "_id": e["envelope"]["id"], "topic": e["topic"]} for e in entries]
        for doc in docs:
            doc["time"] = datetime.fromisoformat(doc["time"])
        try:
            await self._event_log.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            # Already archived by an earlier attempt: duplicates are expected, anything else is not.
            if any(err.get("code") != 11000 for err in exc.details.get("writeErrors", [])):
                raise
        except PyMongoError as exc:
            if "duplicate" not in str(exc).lower():
                raise

    async def _send(self, entries: list[Document]) -> None:
        # Send them all, then wait: one aggregate's events share a key, hence a partition,
        # and the producer keeps their order.
        pending = []
        for entry in entries:
            key, value, headers = to_kafka(entry["envelope"])
            pending.append(await self._publish(entry["topic"], key, value, headers))
        for ack in pending:
            await ack
        now = self._clock.now()
        for entry in entries:
            OUTBOX_PUBLISHED.labels(entry["envelope"]["type"]).inc()
            lag = (now - as_utc(datetime.fromisoformat(entry["envelope"]["time"]))).total_seconds()
            OUTBOX_LAG.observe(max(lag, 0.0))


async def pending_count(collection: AsyncCollection[Document]) -> int:
    # A range on the indexed marker (not $exists), counted with the count command: cheap everywhere.
    return await count(collection, {PENDING: {"$gte": EPOCH}})
