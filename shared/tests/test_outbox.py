"""The outbox against a real broker and store: one atomic write, published once, in order, by any number of relays."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from faststream.kafka import KafkaBroker
from pydantic import BaseModel
from pymongo import AsyncMongoClient

from crm_platform.clock import SystemClock
from crm_platform.errors import PreconditionFailed, ValidationFailed
from crm_platform.events import EventEnvelope, define
from crm_platform.kafka import broker_publisher, ensure_topics
from crm_platform.outbox import PENDING, OutboxRelay
from crm_platform.store import Change, VersionedStore
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import EventCollector, collect, eventually

TOPIC = f"crm.outboxtest-{uuid.uuid4().hex[:6]}.v1"


class Counted(BaseModel):
    n: int


COUNTED = define("crm.thing.counted", Counted, TOPIC)
clock = SystemClock()


def event(subject: str, n: int, version: int) -> tuple[str, EventEnvelope]:
    return TOPIC, COUNTED.build(
        source="/test", subject=subject, data=Counted(n=n), aggregate_version=version, time=clock.now(), actor="tester"
    )


@pytest.fixture(scope="module")
async def db(backend: Backend) -> AsyncIterator[object]:
    client = AsyncMongoClient(backend.mongo_url, tz_aware=True)
    yield client[f"outbox_{uuid.uuid4().hex[:8]}"]
    await client.close()


@pytest.fixture(scope="module")
async def broker(backend: Backend) -> AsyncIterator[KafkaBroker]:
    await ensure_topics(backend.kafka_bootstrap, [TOPIC])
    b = KafkaBroker(backend.kafka_bootstrap, acks="all")
    await b.start()
    yield b
    await b.stop()


@pytest.fixture(scope="module")
async def events(backend: Backend, broker: KafkaBroker) -> AsyncIterator[EventCollector]:
    collector, stop = EventCollector(), asyncio.Event()
    task = asyncio.create_task(collect(backend.kafka_bootstrap, [TOPIC], collector, stop))
    yield collector
    stop.set()
    await task


def increment(n: int):
    def decide(doc: dict, version: int) -> Change:
        doc["n"] = doc.get("n", 0) + n
        return Change(doc, [event(doc["_id"], doc["n"], version)])

    return decide


async def test_write_and_events_are_one_document_and_leave_in_order(db, broker, events):
    collection = db["things"]
    store = VersionedStore(collection, clock)
    aggregate = uuid.uuid4().hex
    await store.insert({"_id": aggregate, "n": 0}, [event(aggregate, 0, 1)])
    for _ in range(4):
        await store.mutate(aggregate, increment(1))
    stored = await collection.find_one({"_id": aggregate})
    assert stored["version"] == 5 and len(stored["outbox"]) == 5 and stored[PENDING] is not None

    relay = OutboxRelay([collection], broker_publisher(broker), clock, event_log=db["event_log"])
    assert await relay.drain() == 5
    got = await events.wait_for(5, subject=aggregate)
    assert [r.event["aggregateversion"] for r in got] == [1, 2, 3, 4, 5]
    assert {r.key for r in got} == {aggregate.encode()}
    assert len({r.partition for r in got}) == 1
    assert got[0].headers["content-type"] == b"application/cloudevents+json"
    assert got[0].event["specversion"] == "1.0" and got[0].event["type"] == "crm.thing.counted"
    after = await collection.find_one({"_id": aggregate})
    assert after["outbox"] == [] and PENDING not in after and after["version"] == 5
    assert await db["event_log"].count_documents({"subject": aggregate}) == 5
    assert await relay.drain() == 0


async def test_a_change_from_a_document_already_read_loses_nothing_when_that_copy_is_stale(db):
    """``mutate(current=...)`` starts from the caller's copy (no read); the guarded write refuses a
    stale copy and the retry reads the document afresh, so no update and no event is lost."""
    collection = db["things"]
    store = VersionedStore(collection, clock)
    aggregate = uuid.uuid4().hex
    await store.insert({"_id": aggregate, "n": 0}, [event(aggregate, 0, 1)])
    fresh = await collection.find_one({"_id": aggregate})
    done = await store.mutate(aggregate, increment(1), current=fresh)
    assert done["version"] == 2 and done["n"] == 1
    done = await store.mutate(aggregate, increment(10), current=fresh)  # fresh is one version behind now
    stored = await collection.find_one({"_id": aggregate})
    assert stored["n"] == 11 and stored["version"] == 3 and len(stored["outbox"]) == 3


async def test_a_refused_change_writes_nothing_and_publishes_nothing(db, broker, events):
    collection = db["things"]
    store = VersionedStore(collection, clock)
    aggregate = uuid.uuid4().hex
    await store.insert({"_id": aggregate, "n": 0}, [])

    def refuse(doc: dict, version: int) -> Change:
        doc["n"] = 99
        raise ValidationFailed.for_field("n", "not allowed")

    with pytest.raises(ValidationFailed):
        await store.mutate(aggregate, refuse)
    with pytest.raises(PreconditionFailed):
        await store.mutate(aggregate, increment(1), expected_version=7)
    doc = await collection.find_one({"_id": aggregate})
    assert doc["n"] == 0 and doc["version"] == 1 and doc["outbox"] == [] and PENDING not in doc


async def test_concurrent_writers_lose_no_update_and_no_event_while_the_relay_runs(db, broker, events):
    collection = db["contended"]
    store = VersionedStore(collection, clock)
    relay = OutboxRelay([collection], broker_publisher(broker), clock, poll_seconds=0.05)
    store_with_wake = VersionedStore(collection, clock, wake_relay=relay.wake)
    aggregate = uuid.uuid4().hex
    await store.insert({"_id": aggregate, "n": 0}, [event(aggregate, 0, 1)])
    relay.start()
    try:
        await asyncio.gather(*(store_with_wake.mutate(aggregate, increment(1)) for _ in range(30)))
        got = await events.wait_for(31, subject=aggregate, timeout=30)
    finally:
        await relay.stop()
    doc = await collection.find_one({"_id": aggregate})
    assert doc["n"] == 30 and doc["version"] == 31
    versions = [r.event["aggregateversion"] for r in got]
    assert sorted(versions) == list(range(1, 32)), "every version published exactly once"
    assert versions == sorted(versions), "one aggregate's events stay in order"

    async def drained() -> bool:
        return (await collection.find_one({"_id": aggregate}))["outbox"] == []

    await eventually(drained, message="outbox drained")


async def test_two_relay_replicas_publish_each_event_exactly_once(db, broker, events):
    collection = db["replicas"]
    store = VersionedStore(collection, clock)
    ids = [uuid.uuid4().hex for _ in range(40)]
    for i in ids:
        await store.insert({"_id": i, "n": 0}, [event(i, 0, 1), event(i, 1, 2)])
    relays = [OutboxRelay([collection], broker_publisher(broker), clock, batch_size=7) for _ in range(2)]
    counts = await asyncio.gather(*(r.drain() for r in relays))
    assert sum(counts) == 80
    for i in ids:
        got = await events.wait_for(2, subject=i)
        assert [r.event["aggregateversion"] for r in got] == [1, 2]


async def test_events_written_while_the_broker_is_down_arrive_once_it_is_back(backend, db):
    """The broker dies, writes go on; the relay keeps the events and publishes them when it returns."""
    import tempfile
    from pathlib import Path

    from crm_platform.devstack.embedded import start_broker
    from crm_platform.devstack.processes import free_port

    port = free_port()
    logs = Path(tempfile.mkdtemp(prefix="relay-broker-"))
    kafka = start_broker(port, "memory", logs)
    bootstrap = f"127.0.0.1:{port}"
    topic = TOPIC
    b = KafkaBroker(bootstrap, acks="all", request_timeout_ms=3000)
    # Retries capped at 2 s: how long the broker takes to come back on a busy machine is not this
    # test's subject, and the default cap (30 s) could put the next attempt past the wait below.
    relay = OutboxRelay([db["broker_down"]], broker_publisher(b), clock, poll_seconds=0.1, retry_max_seconds=2)
    try:
        await ensure_topics(bootstrap, [topic])
        await b.start()
        collection = db["broker_down"]
        store = VersionedStore(collection, clock, wake_relay=relay.wake)
        relay.start()
        kafka.stop()  # the broker is gone
        aggregate = uuid.uuid4().hex
        await store.insert({"_id": aggregate, "n": 0}, [event(aggregate, 0, 1)])  # the write still succeeds
        await eventually(lambda: relay.last_error, timeout=30, message="relay notices the broker is down")
        assert (await collection.find_one({"_id": aggregate}))["outbox"], "the event waits in the outbox"

        kafka = start_broker(port, "memory", logs)  # back (empty: memory storage)
        await ensure_topics(bootstrap, [topic])

        async def drained() -> bool:
            return (await collection.find_one({"_id": aggregate}))["outbox"] == []

        # First the relay's side (with its last error if it never gets there), then the topic's.
        try:
            await eventually(drained, timeout=60, message="outbox drained")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the relay's last error: {relay.last_error}") from exc
        collector, stop = EventCollector(), asyncio.Event()
        task = asyncio.create_task(collect(bootstrap, [topic], collector, stop))
        try:
            got = await collector.wait_for(1, subject=aggregate, timeout=60)
        finally:
            stop.set()
            await task  # raises what the collector met, if it failed
        assert len(got) == 1
    finally:
        await relay.stop()
        await b.stop()
        kafka.stop()
