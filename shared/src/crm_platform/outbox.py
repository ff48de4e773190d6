"""The transactional outbox, single-document.

A state change and the events it causes are one atomic MongoDB write: the new
state, the bumped version and the events appended to the document's ``outbox``
array are written by one replace guarded by the version the writer read (see
:mod:`crm_platform.store`). We replace whole documents rather than use update
operators because the embedded store mishandles several of them (``$push`` turns
array elements into strings, ``$set``/``$min`` of a date store a string), while a
guarded replace behaves the same on it and on MongoDB. ``outbox_pending_ms``
(epoch milliseconds of the oldest unpublished event) is a top-level, indexed
integer so the relay finds pending aggregates with an index range: the embedded
store wraps a date in a function, which no index serves (80 ms per poll at 6k
documents, against a fraction of a millisecond for the integer).

The relay leases one aggregate at a time (a conditional update by ``_id`` and the
``outbox_rev`` it read, so several replicas never publish the same aggregate at
once; no ``$or``, which the embedded store cannot index), appends its events to the
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
from datetime import datetime, timedelta
from typing import Any

import structlog
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from crm_platform.clock import Clock, as_utc
from crm_platform.events import EventEnvelope, to_kafka
from crm_platform.metrics import OUTBOX_LAG, OUTBOX_PUBLISHED, OUTBOX_RELAY_ERRORS
from crm_platform.storemetrics import ORIGIN
from crm_platform.tasks import cancel_and_wait

log = structlog.get_logger(__name__)

Document = dict[str, Any]
# (topic, key, value, headers) -> awaitable that resolves once the broker acknowledged
Publish = Callable[[str, bytes, bytes, dict[str, str]], Awaitable[Awaitable[Any]]]

PENDING = "outbox_pending_ms"  # epoch ms of the oldest unpublished event's write (an integer: indexable)
LEGACY_PENDING = "outbox_pending_since"  # the same as a datetime, as versions before 2026-12 stored it
REV = "outbox_rev"  # bumped by the relay, so a writer holding an older read retries
LEASE = "outbox_lease_until"  # epoch seconds (a number: comparable on every store)
LEASE_OWNER = "outbox_lease_owner"


def outbox_entries(events: Sequence[tuple[str, EventEnvelope]]) -> list[Document]:
    """Outbox array entries for (topic, envelope) pairs."""
    return [{"topic": topic, "envelope": env.model_dump(mode="json")} for topic, env in events]


BOOKKEEPING = ("outbox", REV, PENDING, LEGACY_PENDING, LEASE, LEASE_OWNER)


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


async def ensure_outbox_indexes(collection: AsyncCollection[Document]) -> None:
    # The embedded store uses a single-field index only if its name ends in _<field>.
    await collection.create_index([(PENDING, ASCENDING)], name=f"idx_{PENDING}", sparse=True)
    await _upgrade_legacy_markers(collection)


async def _upgrade_legacy_markers(collection: AsyncCollection[Document]) -> None:
    """Once per collection: aggregates stored with the datetime marker get the integer one.

    Reading the legacy field scans the collection, so a marker in the database's
    ``migrations`` collection records that it is done and later starts skip it.
    """
    migrations = collection.database["migrations"]
    marker = f"outbox_pending_ms:{collection.name}"
    if await migrations.find_one({"_id": marker}) is not None:
        return
    upgraded = 0
    async for doc in collection.find({LEGACY_PENDING: {"$exists": True}}, projection={"_id": 1, LEGACY_PENDING: 1}):
        since = doc.get(LEGACY_PENDING)
        ms = epoch_ms(as_utc(since)) if isinstance(since, datetime) else 0
        await collection.update_one({"_id": doc["_id"]}, {"$set": {PENDING: ms}, "$unset": {LEGACY_PENDING: ""}})
        upgraded += 1
    with contextlib.suppress(DuplicateKeyError):  # another replica finished first
        await migrations.insert_one({"_id": marker, "documents": upgraded})


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
        retry_max_seconds: float = 30.0,
    ) -> None:
        self._collections = list(collections)
        self._publish = publish
        self._clock = clock
        self._event_log = event_log
        self._lease = timedelta(seconds=lease_seconds)
        self._poll_seconds = poll_seconds
        self._batch_size = batch_size
        self._retry_max_seconds = retry_max_seconds
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
            await cancel_and_wait(self._task)
            self._task = None

    async def _run(self) -> None:
        ORIGIN.set("relay")
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
                backoff = min(backoff * 2, self._retry_max_seconds)
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
                # Only the indexed integer marker in the query; leases are checked here on the
                # few pending rows, reading past those another replica holds.
                pending = collection.find({PENDING: {"$lte": epoch_ms(now)}}, projection={"_id": 1, LEASE: 1, REV: 1})
                rows = [d async for d in pending.sort(PENDING, ASCENDING).limit(self._batch_size * 4)]
                free = [d for d in rows if not d.get(LEASE) or d[LEASE] < now.timestamp()]
                candidates = free[: self._batch_size]
                if not candidates:
                    break
                counts = await asyncio.gather(*(self._relay_one(collection, c) for c in candidates))
                total += sum(counts)
        return total

    async def _relay_one(self, collection: AsyncCollection[Document], row: Document) -> int:
        async with self._semaphore:
            now = self._clock.now().timestamp()
            # Guarded by the revision we read: only the relay bumps it, so of several replicas
            # that saw this aggregate free, one wins; a row drained or leased meanwhile moved on.
            leased = await collection.find_one_and_update(
                {"_id": row["_id"], REV: row.get(REV, 0)},
                {"$set": {LEASE: now + self._lease.total_seconds(), LEASE_OWNER: self._owner}, "$inc": {REV: 1}},
                return_document=ReturnDocument.AFTER,
            )
            if leased is None or PENDING not in leased:
                return 0  # another replica has it, or it was drained meanwhile
            aggregate_id = row["_id"]
            entries: list[Document] = leased.get("outbox") or []
            try:
                if entries:
                    await self._archive(entries)
                    await self._send(entries)
            except BaseException:
                await collection.update_one(
                    {"_id": aggregate_id, LEASE_OWNER: self._owner},
                    {"$set": {LEASE: 0, LEASE_OWNER: None}, "$inc": {REV: 1}},
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


PENDING_COUNT_CAP = 10_000


async def pending_count(collection: AsyncCollection[Document], cap: int = PENDING_COUNT_CAP) -> int:
    """Aggregates with unpublished events, counted up to ``cap``.

    The ids come from an index range on the integer marker; the count command would scan
    the collection on the embedded store (it does not use the index for a count).
    """
    cursor = collection.find({PENDING: {"$gte": 0}}, projection={"_id": 1}).sort(PENDING, ASCENDING).limit(cap)
    return len(await cursor.to_list())
