"""The pool service in-process, once per test session, against the session's Kafka and MongoDB.

Time is a :class:`ManualClock` the tests move (the periodic scheduler is off; tests run it
through ``POST /v1/pool/run`` or the recycler). Rules are per department, each test under its
own department path, so tests do not see each other's customers.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI

from crm_platform.clock import ManualClock
from crm_platform.replay import caught_up
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import TEST_JWT_SECRET, EventCollector, collecting, eventually
from crm_pool.main import create_app
from crm_pool.settings import PoolSettings


@pytest.fixture(scope="session")
def pool_clock() -> ManualClock:
    return ManualClock(datetime.now(UTC))


@pytest.fixture(scope="session")
def pool_settings(backend: Backend) -> PoolSettings:
    return PoolSettings(
        kafka_bootstrap_servers=backend.kafka_bootstrap,
        kafka_enable_idempotence=backend.kafka_enable_idempotence,
        mongo_url=backend.mongo_url,
        mongo_database=f"crm_pool_{uuid.uuid4().hex[:8]}",
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        log_format="console",
        log_level="WARNING",
        scheduler_enabled=False,
        consumer_backoff_initial_seconds=0.05,
        consumer_max_attempts=3,
    )


@pytest.fixture(scope="session")
async def pool_app(pool_settings: PoolSettings, pool_clock: ManualClock) -> AsyncIterator[FastAPI]:
    app = create_app(pool_settings, pool_clock)
    async with app.router.lifespan_context(app):
        kit = app.state.kit
        await eventually(
            lambda: all(c.assigned() for c in kit.consumers), timeout=30, message="pool consumers assigned"
        )
        # A new consumer group reads the topics from the start: the events every earlier test of
        # the session published. Tests wait for their own events with short deadlines, so the
        # backlog is worked off first.
        await caught_up(kit.consumers, timeout=300)
        yield app


@pytest.fixture(scope="session")
async def pool_client(pool_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=pool_app), base_url="http://pool.test") as c:
        yield c


@pytest.fixture(scope="session")
async def pool_events(backend: Backend, pool_app: FastAPI) -> AsyncIterator[EventCollector]:
    async with collecting(backend.kafka_bootstrap, ["crm.pool.v1"]) as collector:
        yield collector
