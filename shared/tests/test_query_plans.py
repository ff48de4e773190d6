"""The platform's store commands are index lookups on the embedded store (its SQLite query plans).

Each test runs the real code (the versioned store, the relay, the read-copy writes) against a
store in this process that records every SQL statement it executes and asks SQLite for its
plan; a statement whose cost grows with the collection fails the test and is printed with its
plan. The collection holds enough rows that SQLite would rather scan than use a bad index.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel
from pymongo import AsyncMongoClient

from crm_platform.clock import ManualClock, SystemClock
from crm_platform.consumer import apply_once, apply_versioned
from crm_platform.events import EventEnvelope, define
from crm_platform.outbox import LEASES, PENDING, OutboxRelay, ensure_outbox_indexes, pending_count
from crm_platform.store import Change, VersionedStore
from crm_platform.testing.query_plans import Capture, TracedStore

TOPIC = "crm.plantest.v1"
ROWS = 300
clock = SystemClock()


class Noted(BaseModel):
    note: str


NOTED = define("crm.plannote.noted", Noted, TOPIC)


def envelope(subject: str, version: int) -> EventEnvelope:
    return NOTED.build(
        source="/t", subject=subject, data=Noted(note="n"), aggregate_version=version, time=clock.now(), actor="t"
    )


@pytest.fixture(scope="module")
async def db(traced_store: TracedStore) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(traced_store.url, tz_aware=True)
    yield client[f"plans_{uuid.uuid4().hex[:8]}"]
    await client.close()


def assert_indexed(capture: Capture) -> None:
    assert capture.statements, "nothing was recorded: the capture did not see the store"
    # row_filters: a guard or an $in tested row by row is a scan too, unless the rows come by _id.
    scans = capture.scans(sorted_results=True, row_filters=True)
    assert not scans, "statements that scan:\n" + capture.report(sorted_results=True, row_filters=True)


async def acknowledged() -> None:
    return None


async def test_versioned_store_and_relay_are_index_lookups(db: Any, traced_store: TracedStore) -> None:
    aggregates = db["aggregates"]
    await ensure_outbox_indexes(aggregates)
    store = VersionedStore(aggregates, clock)
    await aggregates.insert_many([{"_id": f"old-{i}", "n": i, "version": 1} for i in range(ROWS)])
    published: list[bytes] = []

    async def publish(topic: str, key: bytes, value: bytes, headers: dict[str, str]) -> Any:
        published.append(value)

        async def ack() -> None:
            return None

        return ack()

    relay = OutboxRelay([aggregates], publish, clock, event_log=db["event_log"])
    subject = uuid.uuid4().hex
    await aggregates.insert_many(  # published long ago: other rows the poll's index must skip
        [{"_id": f"done-{i}", "n": i, "version": 2, "outbox": [], "outbox_rev": 1} for i in range(ROWS)]
    )
    with traced_store.capture() as capture:
        await store.insert({"_id": subject, "n": 0}, [(TOPIC, envelope(subject, 1))])
        await store.mutate(subject, lambda doc, v: Change({**doc, "n": 1}, [(TOPIC, envelope(subject, v))]))
        assert await pending_count(aggregates) == 1
        assert await relay.drain() == 2
        assert await relay.drain() == 0
    assert_indexed(capture)
    assert len(published) == 2
    assert PENDING not in (await aggregates.find_one({"_id": subject}) or {})


async def test_read_copy_writes_are_index_lookups(db: Any, traced_store: TracedStore) -> None:
    copies = db["copies"]
    await copies.insert_many([{"_id": f"c-{i}", "source_version": 1} for i in range(ROWS)])
    subject = uuid.uuid4().hex
    with traced_store.capture() as capture:
        assert await apply_versioned(copies, envelope(subject, 1), {"note": "a"})  # insert
        assert await apply_versioned(copies, envelope(subject, 3), {"note": "c"})  # newer
        assert not await apply_versioned(copies, envelope(subject, 2), {"note": "b"})  # stale
        assert await apply_once(copies, f"once-{subject}", "e1", lambda d: {"n": 1})
        assert not await apply_once(copies, f"once-{subject}", "e1", lambda d: {"n": 1})
    assert_indexed(capture)


async def test_the_capture_sees_a_scan(db: Any, traced_store: TracedStore) -> None:
    """The detector itself: an $in on an array field is a scan on the embedded store."""
    things = db["things"]
    await things.insert_many([{"_id": f"t-{i}", "tags": [f"x{i}"]} for i in range(ROWS)])
    await things.create_index("tags", name="idx_tags")
    with traced_store.capture() as capture:
        await things.find({"tags": {"$in": ["x1"]}}).to_list()
    assert capture.scans(), "an $in on an array field scans on the embedded store"


async def test_the_relays_lease_and_its_clear_after_a_concurrent_write_are_index_lookups(
    db: Any, traced_store: TracedStore
) -> None:
    """Every other shape the relay sends: the lease renewed, refused to a second relay, given back;
    and a clear whose guarded statement missed (a writer appended meanwhile), which reads the batch
    again by ``_id`` ``$in`` and replaces the one that moved."""
    aggregates = db["leased"]
    await ensure_outbox_indexes(aggregates)
    store = VersionedStore(aggregates, clock)
    await aggregates.insert_many([{"_id": f"old-{i}", "n": i, "version": 1} for i in range(ROWS)])
    await db[LEASES].insert_many([{"_id": f"other-{i}", "owner": "x", "until": 0} for i in range(ROWS)])
    manual = ManualClock(clock.now() + timedelta(seconds=1))
    subjects = [uuid.uuid4().hex for _ in range(3)]
    for subject in subjects:
        await store.insert({"_id": subject, "n": 0}, [(TOPIC, envelope(subject, 1))])
    written: list[Any] = []

    async def publish(topic: str, key: bytes, value: bytes, headers: dict[str, str]) -> Any:
        if key == subjects[0].encode() and not written:
            change = Change({"_id": subjects[0], "n": 1}, [(TOPIC, envelope(subjects[0], 2))])
            written.append(await store.mutate(subjects[0], lambda doc, v: change))
        return acknowledged()

    relay = OutboxRelay([aggregates], publish, manual, lease_seconds=10, event_log=db["event_log"])
    other = OutboxRelay([aggregates], publish, manual, lease_seconds=10)
    with traced_store.capture() as capture:
        assert await relay.drain() == 3  # lease taken; one statement of the clear misses: the fallback
        manual.advance(timedelta(seconds=6))
        assert await other.drain() == 0  # the lease is held: refused
        assert await relay.drain() == 1  # renewed (past half its length), then the appended event
        await relay.stop()  # given back
    assert_indexed(capture)
    assert any("IN (" in s.sql for s in capture.statements), "the fallback read ran"
    assert (await db[LEASES].find_one({"_id": "leased"}) or {}).get("until") == 0
