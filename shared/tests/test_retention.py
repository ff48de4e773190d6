"""The source records' retention purge (crm_platform.retention), on the embedded store: what it
deletes (old records whose events were published), what it keeps (recent ones, and old ones whose
event still waits for the relay), and that every statement it sends is an index lookup.

Records are written and published by the real versioned store and relay, as the customers
service's export records and the directory's sign-in records are.
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
from crm_platform.events import EventEnvelope, define
from crm_platform.outbox import PENDING, OutboxRelay, ensure_outbox_indexes, epoch_ms
from crm_platform.retention import ensure_record_index, purge_records
from crm_platform.store import VersionedStore
from crm_platform.testing.query_plans import TracedStore

TOPIC = "crm.retentiontest.v1"
OLD = 150  # records written 100 days ago and more
RECENT = 150  # written in the last 60 days


class Recorded(BaseModel):
    n: int


RECORDED = define("crm.retention_record.created", Recorded, TOPIC)


@pytest.fixture(scope="module")
async def db(traced_store: TracedStore) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(traced_store.url, tz_aware=True)
    yield client[f"retention_{uuid.uuid4().hex[:8]}"]
    await client.close()


def envelope(clock: ManualClock, subject: str, n: int) -> EventEnvelope:
    return RECORDED.build(
        source="/t", subject=subject, data=Recorded(n=n), aggregate_version=1, time=clock.now(), actor="t"
    )


async def publish(topic: str, key: bytes, value: bytes, headers: dict[str, str]) -> Any:
    async def ack() -> None:
        return None

    return ack()


async def test_old_published_records_are_deleted_pending_and_recent_ones_kept(
    db: Any, traced_store: TracedStore
) -> None:
    records = db["records"]
    await ensure_outbox_indexes(records)
    await ensure_record_index(records)
    now = SystemClock().now()
    clock = ManualClock(now - timedelta(days=200))
    store = VersionedStore(records, clock)
    relay = OutboxRelay([records], publish, SystemClock(), event_log=db["event_log"])
    for n in range(OLD + RECENT):
        start = now - timedelta(days=200) if n < OLD else now - timedelta(days=60) - timedelta(hours=OLD)
        clock.set(start + timedelta(hours=n))
        record_id = f"r-{n}"
        await store.insert({"_id": record_id, "at_ms": epoch_ms(clock.now())}, [(TOPIC, envelope(clock, record_id, n))])
    assert await relay.drain() == OLD + RECENT
    # An old record whose event has not left yet (the relay was down): kept whatever its age.
    clock.set(now - timedelta(days=300))
    await store.insert({"_id": "waiting", "at_ms": epoch_ms(clock.now())}, [(TOPIC, envelope(clock, "waiting", -1))])
    assert (await records.find_one({"_id": "waiting"}))[PENDING]

    with traced_store.capture() as capture:
        deleted = await purge_records(records, now, retention_days=90, batch_size=20)

    assert deleted == OLD
    left = {doc["_id"] async for doc in records.find({}, projection={"_id": 1})}
    assert left == {"waiting"} | {f"r-{n}" for n in range(OLD, OLD + RECENT)}
    # Several batches, each one index range on at_ms and one delete by _id; nothing scans.
    assert capture.statements, "the capture did not see the store"
    scans = capture.scans(sorted_results=True, row_filters=True)
    assert not scans, "statements that scan:\n" + capture.report(sorted_results=True, row_filters=True)
    ranges = [s for s in capture.statements if "FROM records" in s.sql and "at_ms" in s.sql and "SELECT" in s.sql]
    assert ranges and all(any("USING INDEX idx_records_at_ms" in line for line in s.plan) for s in ranges), [
        s.describe() for s in ranges
    ]
    assert sum("DELETE" in s.sql for s in capture.statements) >= OLD // 20

    # A second pass finds nothing more to delete (the waiting record stays until published).
    assert await purge_records(records, now, retention_days=90, batch_size=20) == 0
    assert await relay.drain() == 1
    assert await purge_records(records, now, retention_days=90, batch_size=20) == 1
    assert await records.find_one({"_id": "waiting"}) is None


async def test_a_batch_of_records_all_waiting_for_the_relay_ends_the_pass(db: Any) -> None:
    records = db["waiting"]
    await ensure_record_index(records)
    now = SystemClock().now()
    clock = ManualClock(now - timedelta(days=120))
    store = VersionedStore(records, clock)
    for n in range(5):
        await store.insert({"_id": f"w-{n}", "at_ms": epoch_ms(clock.now())}, [(TOPIC, envelope(clock, f"w-{n}", n))])
    assert await purge_records(records, now, retention_days=90, batch_size=5) == 0
    assert await records.count_documents({}) == 5
