"""The outbox against a real broker and store: one atomic write, published once, in order, by any number of relays."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiokafka.errors import KafkaTimeoutError
from faststream.kafka import KafkaBroker
from pydantic import BaseModel
from pymongo import AsyncMongoClient

from crm_platform.clock import ManualClock, SystemClock
from crm_platform.devstack.processes import free_port
from crm_platform.errors import PreconditionFailed, ValidationFailed
from crm_platform.events import EventEnvelope, define
from crm_platform.kafka import broker_publisher, ensure_topics
from crm_platform.metrics import STORE_COMMANDS
from crm_platform.outbox import LEASES, PENDING, REV, OutboxRelay, ensure_outbox_indexes
from crm_platform.store import Change, VersionedStore
from crm_platform.storemetrics import ORIGIN, CommandCounter
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


# --- the relay in batches: one lease per collection, three commands per batch ----------------


def store_commands(origin: str) -> dict[str, float]:
    """crm_store_commands_total of this process for ``origin``, by command name."""
    found: dict[str, float] = {}
    for metric in STORE_COMMANDS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("origin") == origin:
                found[sample.labels["command"]] = sample.value
    return found


def since(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}


class Recording:
    """A publisher that records what it was asked to send (and by whom) before sending it for real."""

    def __init__(self, broker: KafkaBroker, name: str, sent: list[tuple[str, str]]) -> None:
        self._real = broker_publisher(broker)
        self._name = name
        self.sent = sent

    async def __call__(self, topic: str, key: bytes, value: bytes, headers: dict[str, str]) -> Awaitable[Any]:
        self.sent.append((self._name, json.loads(value)["id"]))
        return await self._real(topic, key, value, headers)


async def test_a_batch_of_many_aggregates_costs_three_store_commands_and_an_idle_poll_one(backend, broker, events):
    """Counted as crm_store_commands_total counts them: the bulk clear is ONE update command."""
    origin = f"relaytest-{uuid.uuid4().hex[:6]}"
    client = AsyncMongoClient(backend.mongo_url, tz_aware=True, event_listeners=[CommandCounter()])
    collection = client[f"outbox_{uuid.uuid4().hex[:8]}"]["batched"]
    await ensure_outbox_indexes(collection)
    store = VersionedStore(collection, clock)
    relay = OutboxRelay([collection], broker_publisher(broker), clock, event_log=collection.database["event_log"])
    token = ORIGIN.set(origin)
    try:
        first = [uuid.uuid4().hex for _ in range(40)]
        for i in first:
            await store.insert({"_id": i, "n": 0}, [event(i, 0, 1), event(i, 1, 2)])
        before = store_commands(origin)
        assert await relay.drain() == 80
        # the poll, the lease taken (an upsert), the poll again now that we hold it, the event log, the clear
        assert since(before, store_commands(origin)) == {"find": 2, "update": 2, "insert": 1}

        second = [uuid.uuid4().hex for _ in range(40)]
        for i in second:
            await store.insert({"_id": i, "n": 0}, [event(i, 0, 1), event(i, 1, 2)])
        before = store_commands(origin)
        assert await relay.drain() == 80
        assert since(before, store_commands(origin)) == {"find": 1, "insert": 1, "update": 1}, "lease still held"

        before = store_commands(origin)
        assert await relay.drain() == 0
        assert since(before, store_commands(origin)) == {"find": 1}, "idle: the poll alone"
    finally:
        ORIGIN.reset(token)
        await relay.stop()
    for i in first + second:
        got = await events.wait_for(2, subject=i)
        assert [r.event["aggregateversion"] for r in got] == [1, 2]
        doc = await collection.find_one({"_id": i})
        assert doc["outbox"] == [] and PENDING not in doc and doc[REV] == 1
    assert await collection.database["event_log"].count_documents({}) == 160
    await client.close()


async def test_two_relays_with_writers_appending_publish_every_event_once_in_order_from_one_relay(db, broker, events):
    """Both relays run and are woken by every write; only the lease holder publishes, so nothing
    is published twice and each aggregate's events leave in version order."""
    collection = db["two_relays"]
    sent: list[tuple[str, str]] = []
    relays = [
        OutboxRelay([collection], Recording(broker, name, sent), clock, poll_seconds=0.05, batch_size=5)
        for name in ("a", "b")
    ]

    def wake_both() -> None:
        for r in relays:
            r.wake()

    store = VersionedStore(collection, clock, wake_relay=wake_both)
    ids = [uuid.uuid4().hex for _ in range(12)]
    for r in relays:
        r.start()
    try:
        await asyncio.gather(*(store.insert({"_id": i, "n": 0}, [event(i, 0, 1)]) for i in ids))
        await asyncio.gather(*(store.mutate(i, increment(1)) for i in ids for _ in range(6)))
        for i in ids:
            got = await events.wait_for(7, subject=i, timeout=30)
            assert [r.event["aggregateversion"] for r in got] == list(range(1, 8))

        async def drained() -> bool:
            return all([(await collection.find_one({"_id": i}))["outbox"] == [] for i in ids])

        await eventually(drained, timeout=30, message="every outbox drained")
    finally:
        for r in relays:
            await r.stop()
    assert len(sent) == len({event_id for _, event_id in sent}) == len(ids) * 7, "nothing sent twice"
    assert len({name for name, _ in sent}) == 1, "one relay held the collection all along"


async def test_a_writer_appending_while_its_aggregate_is_published_loses_nothing(db, broker, events):
    """The bulk clear's statement for that aggregate matches nothing (its version moved); the relay
    reads it again and removes only what it published: the new event stays, is published next."""
    collection = db["appended"]
    store = VersionedStore(collection, clock)
    busy, quiet = uuid.uuid4().hex, uuid.uuid4().hex
    await store.insert({"_id": busy, "n": 0}, [event(busy, 0, 1)])
    await store.insert({"_id": quiet, "n": 0}, [event(quiet, 0, 1)])
    real = broker_publisher(broker)
    appended: list[dict] = []

    async def publish_and_write(topic: str, key: bytes, value: bytes, headers: dict[str, str]) -> Awaitable[Any]:
        ack = await real(topic, key, value, headers)
        if key == busy.encode() and not appended:
            appended.append(await store.mutate(busy, increment(5)))  # a request lands mid-publication
        return ack

    relay = OutboxRelay([collection], publish_and_write, clock)
    assert await relay.drain() == 2
    doc = await collection.find_one({"_id": busy})
    assert [e["envelope"]["aggregateversion"] for e in doc["outbox"]] == [2], "only the new event waits"
    assert doc["n"] == 5 and doc["version"] == 2 and PENDING in doc
    assert (await collection.find_one({"_id": quiet}))["outbox"] == []
    assert await relay.drain() == 1
    got = await events.wait_for(2, subject=busy)
    assert [r.event["aggregateversion"] for r in got] == [1, 2]
    doc = await collection.find_one({"_id": busy})
    assert doc["outbox"] == [] and PENDING not in doc and doc["n"] == 5
    await asyncio.sleep(0.5)  # nothing more arrives: no event was published twice
    assert len(events.matching(subject=busy)) == 2 and len(events.matching(subject=quiet)) == 1


async def test_a_relay_dead_mid_batch_is_taken_over_after_its_lease_and_only_its_batch_is_repeated(db, broker, events):
    collection = db["dead_relay"]
    store = VersionedStore(collection, clock)
    ids = [uuid.uuid4().hex for _ in range(6)]
    for i in ids:
        await store.insert({"_id": i, "n": 0}, [event(i, 0, 1), event(i, 1, 2)])
    manual = ManualClock(clock.now())
    sent: list[tuple[str, str]] = []
    real = broker_publisher(broker)
    forever = asyncio.Event()

    async def publish_then_hang(topic: str, key: bytes, value: bytes, headers: dict[str, str]) -> Awaitable[Any]:
        sent.append(("dead", json.loads(value)["id"]))
        ack = await real(topic, key, value, headers)

        async def never() -> None:
            await ack
            await forever.wait()  # the process dies before it could clear anything

        return never()

    dying = OutboxRelay([collection], publish_then_hang, manual, lease_seconds=10)
    survivor = OutboxRelay([collection], Recording(broker, "survivor", sent), manual, lease_seconds=10)
    task = asyncio.create_task(dying.drain())
    try:
        await eventually(lambda: len(sent) == 12, message="the dying relay sent its batch")
        assert await survivor.drain() == 0, "the lease is held: the survivor waits"
        manual.advance(timedelta(seconds=5))
        assert await survivor.drain() == 0, "still held (and asked again only after a poll period)"
        manual.advance(timedelta(seconds=6))
        assert await survivor.drain() == 12, "taken over once the lease ran out"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for i in ids:
        got = await events.wait_for(4, subject=i)
        versions = [r.event["aggregateversion"] for r in got]
        assert versions == [1, 2, 1, 2], "the dead relay's batch again, in order, and nothing else"
        assert (await collection.find_one({"_id": i}))["outbox"] == []
    assert await lease_owner(collection) == survivor._owner


async def lease_owner(collection: Any) -> str:
    return (await collection.database[LEASES].find_one({"_id": collection.name}))["owner"]


async def test_a_relay_stopped_cleanly_gives_its_lease_back_at_once(db, broker, events):
    collection = db["handover"]
    store = VersionedStore(collection, clock)
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    await store.insert({"_id": first, "n": 0}, [event(first, 0, 1)])
    old = OutboxRelay([collection], broker_publisher(broker), clock)
    assert await old.drain() == 1
    await old.stop()
    await store.insert({"_id": second, "n": 0}, [event(second, 0, 1)])
    new = OutboxRelay([collection], broker_publisher(broker), clock)
    assert await new.drain() == 1, "no wait for the old relay's lease to run out"
    await events.wait_for(1, subject=second)
    await new.stop()


async def test_the_aggregates_the_broker_acknowledged_are_cleared_the_others_kept_for_the_retry(db, broker, events):
    collection = db["partial"]
    store = VersionedStore(collection, clock)
    good, bad = uuid.uuid4().hex, uuid.uuid4().hex
    await store.insert({"_id": good, "n": 0}, [event(good, 0, 1)])
    await store.insert({"_id": bad, "n": 0}, [event(bad, 0, 1), event(bad, 1, 2)])
    real = broker_publisher(broker)

    async def refuse_bad(topic: str, key: bytes, value: bytes, headers: dict[str, str]) -> Awaitable[Any]:
        if key == bad.encode():

            async def failed() -> None:
                raise KafkaTimeoutError("no acknowledgement")

            return failed()
        return await real(topic, key, value, headers)

    relay = OutboxRelay([collection], refuse_bad, clock)
    with pytest.raises(KafkaTimeoutError):
        await relay.drain()
    assert (await collection.find_one({"_id": good}))["outbox"] == []
    kept = await collection.find_one({"_id": bad})
    assert [e["envelope"]["aggregateversion"] for e in kept["outbox"]] == [1, 2] and PENDING in kept
    await relay.stop()
    retry = OutboxRelay([collection], real, clock)
    assert await retry.drain() == 2
    got = await events.wait_for(2, subject=bad)
    assert [r.event["aggregateversion"] for r in got] == [1, 2]
    assert len(await events.wait_for(1, subject=good)) == 1
    await retry.stop()


class StoreLink:
    """A TCP relay between the outbox relay's client and the store, which the test cuts and restores:
    the store unreachable for the relay alone, while the writers still reach it."""

    def __init__(self, target: str) -> None:
        address = urlsplit(target)
        self._target = (address.hostname or "127.0.0.1", address.port or 27017)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        store_reader, store_writer = await asyncio.open_connection(*self._target)
        self._writers.update({client_writer, store_writer})

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.transport.abort()

        await asyncio.gather(pipe(client_reader, store_writer), pipe(store_reader, client_writer))


async def test_events_written_while_the_relays_store_is_unreachable_leave_once_it_is_back(backend, db, broker, events):
    link = StoreLink(backend.mongo_url)
    await link.up()
    client = AsyncMongoClient(link.url, tz_aware=True, serverSelectionTimeoutMS=500, connectTimeoutMS=500)
    name = db.name
    relay = OutboxRelay(
        [client[name]["store_down"]], broker_publisher(broker), clock, poll_seconds=0.1, retry_max_seconds=0.5
    )
    store = VersionedStore(db["store_down"], clock, wake_relay=relay.wake)
    try:
        relay.start()
        first = uuid.uuid4().hex
        await store.insert({"_id": first, "n": 0}, [event(first, 0, 1)])
        await events.wait_for(1, subject=first)
        await link.down()  # the relay's store is gone; writes through another connection go on
        aggregate = uuid.uuid4().hex
        await store.insert({"_id": aggregate, "n": 0}, [event(aggregate, 0, 1)])
        await eventually(lambda: relay.last_error, timeout=30, message="the relay notices the store is gone")
        await asyncio.sleep(0.5)
        assert (await db["store_down"].find_one({"_id": aggregate}))["outbox"], "the event waits in the outbox"
        assert not events.matching(subject=aggregate), "nothing published without the store"
        await link.up()

        async def drained() -> bool:
            return (await db["store_down"].find_one({"_id": aggregate}))["outbox"] == []

        await eventually(drained, timeout=30, message="outbox drained once the store is back")
        got = await events.wait_for(1, subject=aggregate)
        assert [r.event["aggregateversion"] for r in got] == [1]
    finally:
        await relay.stop()
        await link.down()
        await client.close()
