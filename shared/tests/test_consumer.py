"""Consumers against a real broker and store: idempotent, retried with backoff, dead-lettered with the reason."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from faststream.kafka import KafkaBroker
from pydantic import BaseModel
from pymongo import AsyncMongoClient

from crm_platform.clock import SystemClock
from crm_platform.consumer import EventConsumer, PermanentError, apply_once, apply_versioned
from crm_platform.events import EventEnvelope, define, to_kafka
from crm_platform.kafka import dead_letter_topic, ensure_topics
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import EventCollector, collect, eventually

TOPIC = f"crm.consumertest-{uuid.uuid4().hex[:6]}.v1"
GROUP = f"crm.consumertest-{uuid.uuid4().hex[:6]}"
clock = SystemClock()


class Noted(BaseModel):
    note: str


NOTED = define("crm.note.noted", Noted, TOPIC)


def envelope(subject: str, note: str, version: int = 1) -> EventEnvelope:
    return NOTED.build(
        source="/test", subject=subject, data=Noted(note=note), aggregate_version=version, time=clock.now(), actor="t"
    )


@pytest.fixture(scope="module")
async def db(backend: Backend) -> AsyncIterator[Any]:
    client = AsyncMongoClient(backend.mongo_url, tz_aware=True)
    yield client[f"consumer_{uuid.uuid4().hex[:8]}"]
    await client.close()


async def test_apply_versioned_ignores_stale_and_repeated_events(db):
    copies = db["read_copies"]
    subject = uuid.uuid4().hex
    v1, v3, v2 = envelope(subject, "a", 1), envelope(subject, "c", 3), envelope(subject, "b", 2)
    assert await apply_versioned(copies, v1, {"note": "a"})
    assert await apply_versioned(copies, v3, {"note": "c"})
    assert not await apply_versioned(copies, v2, {"note": "b"}), "older than what we have: ignored"
    assert not await apply_versioned(copies, v3, {"note": "c"}), "the same event again: ignored"
    doc = await copies.find_one({"_id": subject})
    assert doc["note"] == "c" and doc["source_version"] == 3


async def test_apply_versioned_writes_only_its_own_row(db):
    # On the embedded store a filter {_id: X, $or: [...]} became "_id = X AND A OR B" and
    # overwrote another row that matched B (a copy without source_version).
    copies = db[f"read_copies_{uuid.uuid4().hex[:6]}"]
    await copies.insert_one({"_id": "someone-else", "note": "keep"})
    subject = uuid.uuid4().hex
    assert await apply_versioned(copies, envelope(subject, "mine", 1), {"note": "mine"})
    assert await copies.find_one({"_id": "someone-else"}) == {"_id": "someone-else", "note": "keep"}
    assert (await copies.find_one({"_id": subject}))["note"] == "mine"
    assert await copies.count_documents({}) == 2


async def test_apply_versioned_takes_over_a_copy_stored_without_a_version(db):
    copies = db["read_copies"]
    subject = uuid.uuid4().hex
    await copies.insert_one({"_id": subject, "note": "written by older code"})
    assert await apply_versioned(copies, envelope(subject, "new", 1), {"note": "new"})
    doc = await copies.find_one({"_id": subject})
    assert doc["note"] == "new" and doc["source_version"] == 1
    assert not await apply_versioned(copies, envelope(subject, "new", 1), {"note": "new"})


async def test_apply_once_applies_an_event_once(db):
    counters = db["counters"]
    event_id = uuid.uuid4().hex

    def bump(doc: dict | None) -> dict:
        doc = doc or {"n": 0}
        doc["n"] += 1
        return doc

    results = await asyncio.gather(*(apply_once(counters, "c1", event_id, bump) for _ in range(5)))
    assert results.count(True) == 1
    assert await apply_once(counters, "c1", uuid.uuid4().hex, bump)
    assert (await counters.find_one({"_id": "c1"}))["n"] == 2


async def test_apply_once_likely_new_inserts_without_reading_and_falls_back_when_it_exists(db):
    """The insert-first path: a new document in one command; an existing one (made by another
    event first) or a repeated event gives the same outcome as the read-and-replace path."""
    counters = db["counters_new"]

    def bump(doc: dict | None) -> dict:
        doc = doc or {"n": 0}
        doc["n"] += 1
        return doc

    first = uuid.uuid4().hex
    assert await apply_once(counters, "fresh", first, bump, likely_new=True)
    assert (await counters.find_one({"_id": "fresh"}))["n"] == 1
    assert not await apply_once(counters, "fresh", first, bump, likely_new=True)  # repeated: no-op
    assert await apply_once(counters, "fresh", uuid.uuid4().hex, bump, likely_new=True)  # exists: applied on it
    doc = await counters.find_one({"_id": "fresh"})
    assert doc["n"] == 2 and len(doc["applied_events"]) == 2 and doc["rev"] == 2
    # Several "creating" events at once for one new document: each applied exactly once.
    ids = [uuid.uuid4().hex for _ in range(5)]
    results = await asyncio.gather(*(apply_once(counters, "raced", i, bump, likely_new=True) for i in ids))
    assert results == [True] * 5
    assert (await counters.find_one({"_id": "raced"}))["n"] == 5


@pytest.fixture(scope="module")
async def running(backend: Backend, db: Any) -> AsyncIterator[dict[str, Any]]:
    """One broker with a consumer whose handler does real work in MongoDB and can be told to fail."""
    await ensure_topics(backend.kafka_bootstrap, [TOPIC, dead_letter_topic(GROUP)])
    broker = KafkaBroker(backend.kafka_bootstrap, acks="all")
    effects = db["effects"]
    attempts: dict[str, int] = {}

    async def handle(event: EventEnvelope) -> None:
        note = NOTED.parse(event).note
        attempts[note] = attempts.get(note, 0) + 1
        if note.startswith("fail-twice") and attempts[note] <= 2:
            raise RuntimeError("transient failure")
        if note.startswith("always-fail"):
            raise RuntimeError("the handler cannot cope with this one")
        if note.startswith("permanent"):
            raise PermanentError("invalid for us")

        def add(doc: dict | None) -> dict:
            doc = doc or {"notes": []}
            doc["notes"].append(note)
            return doc

        await apply_once(effects, event.subject, event.id, add)

    consumer = EventConsumer(
        broker, group_id=GROUP, topics=[TOPIC], handlers={NOTED.name: handle}, max_attempts=3, backoff_initial=0.01
    )
    await broker.start()
    await eventually(consumer.assigned, timeout=60, message="partitions assigned")
    dlq = EventCollector()
    stop = asyncio.Event()
    task = asyncio.create_task(collect(backend.kafka_bootstrap, [dead_letter_topic(GROUP)], dlq, stop))
    yield {"broker": broker, "effects": effects, "attempts": attempts, "dlq": dlq}
    stop.set()
    await task
    await broker.stop()


async def send(broker: KafkaBroker, env: EventEnvelope) -> None:
    key, value, headers = to_kafka(env.model_dump(mode="json"))
    await broker.publish(value, TOPIC, key=key, headers=headers)


async def test_redelivered_event_changes_nothing_the_second_time(running):
    subject = uuid.uuid4().hex
    env = envelope(subject, "hello")
    await send(running["broker"], env)
    await send(running["broker"], env)  # a replay of the very same event
    await send(running["broker"], envelope(subject, "after"))
    doc = await eventually(
        lambda: running["effects"].find_one({"_id": subject, "notes": "after"}), message="both handled"
    )
    assert doc["notes"] == ["hello", "after"]


async def test_transient_failures_are_retried_then_succeed(running):
    subject = uuid.uuid4().hex
    note = f"fail-twice-{subject}"
    await send(running["broker"], envelope(subject, note))
    doc = await eventually(lambda: running["effects"].find_one({"_id": subject}), message="handled after retries")
    assert doc["notes"] == [note]
    assert running["attempts"][note] == 3


async def test_an_event_that_keeps_failing_goes_to_the_dead_letter_topic_with_the_reason(running):
    subject = uuid.uuid4().hex
    bad = envelope(subject, f"always-fail-{subject}")
    await send(running["broker"], bad)
    await send(running["broker"], envelope(subject, "next one"))  # same key, same partition: not blocked
    dead = await running["dlq"].wait_for(1, id=bad.id)
    headers = dead[0].headers
    assert b"cannot cope" in headers["x-dlq-reason"]
    assert headers["x-dlq-attempts"] == b"3" and headers["x-dlq-group"] == GROUP.encode()
    assert headers["x-dlq-source-topic"] == TOPIC.encode()
    assert dead[0].key == subject.encode()
    assert dead[0].event["id"] == bad.id, "the original message is kept whole"
    await eventually(
        lambda: running["effects"].find_one({"_id": subject, "notes": "next one"}), message="later event handled"
    )


async def test_permanent_errors_and_unreadable_messages_skip_the_retries(running):
    subject = uuid.uuid4().hex
    permanent = envelope(subject, f"permanent-{subject}")
    await send(running["broker"], permanent)
    dead = await running["dlq"].wait_for(1, id=permanent.id)
    assert dead[0].headers["x-dlq-attempts"] == b"1"
    await running["broker"].publish(b"{not json", TOPIC, key=b"garbage")
    await eventually(
        lambda: any(
            r.key == b"garbage" and r.headers.get("x-dlq-reason", b"").startswith(b"JSONDecodeError")
            for r in running["dlq"].records
        ),
        message="garbage dead-lettered",
    )
