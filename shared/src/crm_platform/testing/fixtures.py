"""Pytest fixtures: one Kafka and one MongoDB per test session, tokens, event collectors.

The broker and the store start once (embedded by default, real ones in Docker with
CRM_TEST_BACKEND=docker); each test isolates itself with its own ids, names and
database names, and waits on conditions with deadlines rather than sleeping.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from crm_platform.auth import mint_token
from crm_platform.testing.backends import Backend, start_backend

TEST_JWT_SECRET = "test-secret-for-the-suite-only-0123456789"


@pytest.fixture(scope="session")
def backend() -> Iterator[Backend]:
    started = start_backend()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="session")
def traced_store() -> Any:
    """An embedded store in this process whose SQL is recorded and planned (see ``query_plans``)."""
    from crm_platform.testing.query_plans import TracedStore

    return TracedStore()


def make_token(
    user_id: str,
    roles: list[str] | None = None,
    department_path: str | None = "/hq",
    secret: str = TEST_JWT_SECRET,
) -> str:
    department_id = department_path.rstrip("/").rsplit("/", 1)[-1] if department_path else None
    return mint_token(
        secret_or_private_key=secret,
        user_id=user_id,
        roles=roles or ["rep"],
        department_id=department_id,
        department_path=department_path,
    )


def auth(user_id: str, roles: list[str] | None = None, department_path: str | None = "/hq") -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user_id, roles, department_path)}"}


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def eventually(
    probe: Callable[[], Any], *, timeout: float = 15.0, interval: float = 0.05, message: str = "condition"
) -> Any:
    """Await ``probe()`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = probe()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{message} not met within {timeout}s")
        await asyncio.sleep(interval)


@dataclass
class Collected:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: dict[str, bytes]
    value: bytes

    @property
    def event(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.value)
        return loaded


@dataclass
class EventCollector:
    """Reads topics with a plain aiokafka consumer (not our consumer code) and keeps every record."""

    records: list[Collected] = field(default_factory=list)

    def matching(self, **attrs: Any) -> list[Collected]:
        out = []
        for record in self.records:
            try:
                event = record.event
            except ValueError:
                continue
            if all(event.get(k) == v for k, v in attrs.items()):
                out.append(record)
        return out

    async def wait_for(self, count: int = 1, timeout: float = 15.0, **attrs: Any) -> list[Collected]:
        await eventually(
            lambda: len(self.matching(**attrs)) >= count, timeout=timeout, message=f"{count} event(s) {attrs}"
        )
        return self.matching(**attrs)


async def collect(bootstrap: str, topics: list[str], collector: EventCollector, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        # Assign every partition explicitly from the beginning: no group, no rebalance wait.
        partitions: list[TopicPartition] = []
        for topic in topics:

            async def known(t: str = topic) -> bool:
                return bool(consumer.partitions_for_topic(t)) or await _refresh(consumer, t)

            await eventually(known, timeout=30, message=f"topic {topic}")
            partitions += [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100)
            for tp_records in batch.values():
                for r in tp_records:
                    collector.records.append(
                        Collected(r.topic, r.partition, r.offset, r.key, dict(r.headers or []), r.value or b"")
                    )
    finally:
        await consumer.stop()


async def _refresh(consumer: AIOKafkaConsumer, topic: str) -> bool:
    await consumer._client.force_metadata_update()
    return bool(consumer.partitions_for_topic(topic))


@pytest.fixture(scope="session")
async def producer(backend: Backend) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=backend.kafka_bootstrap, acks="all")
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


@pytest.fixture(scope="session")
def test_jwt_secret() -> str:
    return TEST_JWT_SECRET


def service_settings(backend: Backend, service: str) -> dict[str, Any]:
    """Settings for one in-process copy of a service: its own database and its own consumer group,
    so it neither shares data with nor takes partitions from another copy in the same session."""
    suffix = uuid.uuid4().hex[:8]
    return {
        "kafka_bootstrap_servers": backend.kafka_bootstrap,
        "kafka_enable_idempotence": backend.kafka_enable_idempotence,
        "mongo_url": backend.mongo_url,
        "mongo_database": f"crm_{service}_{suffix}",
        "consumer_group_suffix": f".test-{suffix}",
        "jwt_secret": TEST_JWT_SECRET,
        "log_format": "console",
        "log_level": "WARNING",
    }


@asynccontextmanager
async def running(app: Any, base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """Run an app's lifespan, wait until its consumers have partitions and have worked off what the
    topics already hold (every earlier test's events: tests wait for their own with short
    deadlines), and give an HTTP client to it."""
    from crm_platform.replay import caught_up

    async with app.router.lifespan_context(app):
        kit = app.state.kit
        await eventually(lambda: all(c.assigned() for c in kit.consumers), timeout=60, message="consumers assigned")
        if kit.consumers:
            await caught_up(kit.consumers, timeout=300)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url) as client:
            yield client


@asynccontextmanager
async def collecting(bootstrap: str, topics: list[str]) -> AsyncIterator[EventCollector]:
    """Collect every record of ``topics`` (created if missing) while the block runs."""
    from crm_platform.kafka import ensure_topics

    collector, stop = EventCollector(), asyncio.Event()
    await ensure_topics(bootstrap, topics)
    task = asyncio.create_task(collect(bootstrap, topics, collector, stop))
    try:
        yield collector
    finally:
        stop.set()
        await task


@asynccontextmanager
async def database(mongo_url: str, name: str) -> AsyncIterator[Any]:
    """A service's database, read directly by tests to check what was (not) stored."""
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    try:
        yield client[name]
    finally:
        await client.close()
