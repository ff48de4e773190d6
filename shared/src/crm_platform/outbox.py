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

The relay works in batches, one relay per collection at a time: the one holding
the collection's lease (a small document in ``outbox_leases`` with the collection's
name as ``_id``, renewed once half of it has gone, taken over by another replica
once it runs out, given back on a clean stop). A batch is three store commands
whatever its size: the poll, which returns the pending aggregates whole (outboxes
included) from the index range; one ``insert_many`` into the service's event log
(the history the API shows; idempotent on the event id); and, once the broker has
acknowledged every event (published in order, keyed by the aggregate id), one
``bulk_write`` of ``UpdateOne`` statements, each guarded by the ``_id``, version
and ``outbox_rev`` it read, that empties the outboxes (one ``update`` command on
the wire). Fewer matches than statements mean a writer appended meanwhile: the
batch's aggregates are read again (one ``find`` of ``_id`` ``$in``, which the
embedded store serves from its ``_id`` index) and those still holding what was
published have just that removed with a guarded replace. Every relay write bumps ``outbox_rev``, which writers also
guard on, so a writer holding an older read retries instead of putting published
events back. No ``$or`` anywhere (the embedded store cannot index it). The relay
is woken right after a write and polls as a fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import pymongo
import structlog
from pymongo import ASCENDING, ReplaceOne, UpdateOne
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
# Per-aggregate lease fields above are what relays before the collection lease wrote; read and cleared only.
LEASES = "outbox_leases"  # one document per outbox collection: which relay publishes it, until when
_CLEARED = {PENDING: "", LEASE: "", LEASE_OWNER: ""}
RELEASE_TIMEOUT_SECONDS = 2.0


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
    # A record's history reads its events by subject (crm_platform.history): the embedded store
    # serves an equality only from an index whose name ends in _<field>, else it reads the whole
    # log (every event the service ever published) for each history page.
    await event_log.create_index([("subject", ASCENDING)], name="idx_subject")


class _Hold(enum.Enum):
    HELD = "held"  # held all along: what we read is current
    TAKEN = "taken"  # just taken: another relay may have published what we read before
    REFUSED = "refused"  # another relay's lease runs


class OutboxRelay:
    """Publishes what the outboxes of the given collections hold.

    Per collection, one relay at a time publishes: the one holding the collection's lease
    document (``outbox_leases``, ``_id`` = the collection's name, with its owner and the epoch
    second it runs out). A batch costs three store commands whatever its size: the poll (which
    returns the documents, outboxes included), the event log's ``insert_many`` and one
    ``bulk_write`` of guarded ``UpdateOne`` by ``_id`` that clears every outbox it published.
    The lease is renewed once half of it has gone (one command), given back on :meth:`stop`,
    and taken over by another replica once it has run out (a relay that died mid-batch).
    """

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
        retry_max_seconds: float = 30.0,
    ) -> None:
        self._collections = list(collections)
        self._publish = publish
        self._clock = clock
        self._event_log = event_log
        self._lease_seconds = lease_seconds
        self._poll_seconds = poll_seconds
        self._batch_size = batch_size
        self._retry_max_seconds = retry_max_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._owner = uuid.uuid4().hex
        self._held: dict[str, float] = {}  # collection's full name -> epoch second our lease runs out
        self._not_before: dict[str, float] = {}  # collection's full name -> when to ask for its lease again
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
        await self._release_all()

    async def _run(self) -> None:
        ORIGIN.set("relay")
        backoff = self._poll_seconds
        while True:
            # Cleared before the drain: a write that lands while it runs sets it again, so its
            # events go out on the next pass at once instead of after a poll period.
            self._wake.clear()
            try:
                await self.drain()
                self.last_error = None
                backoff = self._poll_seconds
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
        """Publish everything pending now that this relay may publish; returns how many events went out."""
        total = 0
        for collection in self._collections:
            total += await self._drain_collection(collection)
        return total

    async def _drain_collection(self, collection: AsyncCollection[Document]) -> int:
        total = 0
        while True:
            if self._not_before.get(collection.full_name, 0.0) > self._clock.now().timestamp():
                return total  # another relay holds it: leave it to that one until then
            rows = await self._poll(collection)
            if not rows:
                return total
            hold = await self._hold(collection)
            if hold is _Hold.REFUSED:
                return total
            if hold is _Hold.TAKEN:
                # Read before we held it: another relay may have published some of it meanwhile.
                rows = await self._poll(collection)
            if rows:
                total += await self._relay_batch(collection, rows)
            if len(rows) < self._batch_size:
                return total

    async def _poll(self, collection: AsyncCollection[Document]) -> list[Document]:
        """The oldest pending aggregates, whole (their outboxes with them): an index range on
        the integer marker, in its order, so the poll needs no other read."""
        now = self._clock.now()
        cursor = collection.find({PENDING: {"$lte": epoch_ms(now)}}).sort(PENDING, ASCENDING).limit(self._batch_size)
        rows = await cursor.to_list()
        # An aggregate leased by a relay of a version before the collection lease is left to it
        # until that lease runs out (only during a rolling upgrade).
        return [r for r in rows if not (r.get(LEASE) and r[LEASE] >= now.timestamp())]

    # --- the collection's lease ---------------------------------------------------------

    async def _hold(self, collection: AsyncCollection[Document]) -> _Hold:
        """Make sure this relay holds ``collection``'s lease for at least half its length."""
        name, key = collection.name, collection.full_name
        now = self._clock.now().timestamp()
        held = self._held.get(key)
        if held is not None and held - now > self._lease_seconds / 2:
            return _Hold.HELD  # no command: most batches under load
        leases = collection.database[LEASES]
        until = now + self._lease_seconds
        if held is not None:
            # Renewal, guarded by the owner: if another relay took it over after ours ran out,
            # it stays theirs. If not, no one else held it meanwhile, so what we read is current.
            renewed = await leases.update_one({"_id": name, "owner": self._owner}, {"$set": {"until": until}})
            if renewed.matched_count:
                self._held[key] = until
                return _Hold.HELD
            del self._held[key]
        try:
            # One command: takes a lease that ran out, creates a missing one, and fails with a
            # duplicate key while another relay's lease runs (the upsert then tries an insert).
            await leases.update_one(
                {"_id": name, "until": {"$lt": now}}, {"$set": {"owner": self._owner, "until": until}}, upsert=True
            )
        except DuplicateKeyError:
            self._not_before[key] = now + self._poll_seconds
            return _Hold.REFUSED
        self._held[key] = until
        self._not_before.pop(key, None)
        return _Hold.TAKEN

    async def _release_all(self) -> None:
        """Give our leases back (on a clean stop), so another replica goes on at once."""
        held, self._held = self._held, {}
        for collection in self._collections:
            if collection.full_name in held:
                # Bounded: with the store down, the lease runs out by itself instead.
                with contextlib.suppress(PyMongoError), pymongo.timeout(RELEASE_TIMEOUT_SECONDS):
                    await collection.database[LEASES].update_one(
                        {"_id": collection.name, "owner": self._owner}, {"$set": {"until": 0}}
                    )

    # --- one batch ------------------------------------------------------------------------

    async def _relay_batch(self, collection: AsyncCollection[Document], batch: list[Document]) -> int:
        await self._archive([e for doc in batch for e in doc.get("outbox") or []])
        sent, failure = await self._send(batch)
        await self._clear(collection, sent)
        if failure is not None:
            raise failure  # the rest stays in the outboxes; _run backs off and tries again
        return sum(len(doc.get("outbox") or []) for doc in sent)

    async def _archive(self, entries: list[Document]) -> None:
        if self._event_log is None:
            return
        docs = [{**e["envelope"], "_id": e["envelope"]["id"], "topic": e["topic"]} for e in entries]
        if not docs:
            return
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

    async def _send(self, batch: list[Document]) -> tuple[list[Document], BaseException | None]:
        """Publish every entry of the batch; returns the aggregates all of whose events the broker
        acknowledged, and the first failure if some were not."""
        # Sent all at once, then waited for: one aggregate's events share a key, hence a
        # partition, and the producer keeps their order.
        acks: list[list[Awaitable[Any]]] = []
        for doc in batch:
            mine = []
            for entry in doc.get("outbox") or []:
                key, value, headers = to_kafka(entry["envelope"])
                mine.append(await self._publish(entry["topic"], key, value, headers))
            acks.append(mine)
        results = await asyncio.gather(*(asyncio.gather(*mine) for mine in acks), return_exceptions=True)
        sent = [doc for doc, result in zip(batch, results, strict=True) if not isinstance(result, BaseException)]
        failures = [result for result in results if isinstance(result, BaseException)]
        now = self._clock.now()
        for doc in sent:
            for entry in doc.get("outbox") or []:
                OUTBOX_PUBLISHED.labels(entry["envelope"]["type"]).inc()
                lag = (now - as_utc(datetime.fromisoformat(entry["envelope"]["time"]))).total_seconds()
                OUTBOX_LAG.observe(max(lag, 0.0))
        return sent, failures[0] if failures else None

    async def _clear(self, collection: AsyncCollection[Document], sent: list[Document]) -> None:
        """Empty the outboxes we published, in one ``update`` command for the whole batch.

        Each statement is guarded by the version and revision we read: where they still hold,
        the outbox is exactly what we published. Where a writer appended meanwhile (or the
        aggregate was deleted), the statement matches nothing; those aggregates are read again
        (one ``find`` by ``_id``, which the embedded store serves from its ``_id`` index) and
        only what we published is removed, with a guarded replace, until none is left.
        """
        if not sent:
            return
        cleared = await collection.bulk_write(
            [
                UpdateOne(
                    {"_id": doc["_id"], "version": doc.get("version"), REV: doc.get(REV, 0)},
                    {"$set": {"outbox": []}, "$unset": _CLEARED, "$inc": {REV: 1}},
                )
                for doc in sent
            ],
            ordered=False,
        )
        if cleared.matched_count == len(sent):
            return
        published = {doc["_id"]: {e["envelope"]["id"] for e in doc.get("outbox") or []} for doc in sent}
        while published:
            fresh = collection.find({"_id": {"$in": list(published)}})
            replacements: list[ReplaceOne[Document]] = []
            replaced: list[Any] = []
            for doc in await fresh.to_list():
                ids = published[doc["_id"]]
                outbox = doc.get("outbox") or []
                remaining = [e for e in outbox if e["envelope"]["id"] not in ids]
                if len(remaining) == len(outbox):
                    continue  # cleared by the bulk above (or by an earlier round)
                replacement = {k: v for k, v in doc.items() if k not in (LEASE, LEASE_OWNER)}
                replacement["outbox"] = remaining
                replacement[REV] = doc.get(REV, 0) + 1
                if not remaining:
                    replacement.pop(PENDING, None)
                guard = {"_id": doc["_id"], "version": doc.get("version"), REV: doc.get(REV, 0)}
                replacements.append(ReplaceOne(guard, replacement))
                replaced.append(doc["_id"])
            if not replacements:
                return
            done = await collection.bulk_write(replacements, ordered=False)
            if done.matched_count == len(replacements):
                return
            published = {i: published[i] for i in replaced}  # a writer got in again: read those anew


PENDING_COUNT_CAP = 10_000


async def pending_count(collection: AsyncCollection[Document], cap: int = PENDING_COUNT_CAP) -> int:
    """Aggregates with unpublished events, counted up to ``cap``.

    The ids come from an index range on the integer marker; the count command would scan
    the collection on the embedded store (it does not use the index for a count).
    """
    cursor = collection.find({PENDING: {"$gte": 0}}, projection={"_id": 1}).sort(PENDING, ASCENDING).limit(cap)
    return len(await cursor.to_list())
