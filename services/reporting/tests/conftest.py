"""The reporting service in-process, once per test session, against the session's Kafka and MongoDB.

Tests publish other services' events (built with the contracts) through the real broker
with ``crm_platform.testing.event_feed.EventFeed``, wait until the projection has applied
each one (``wait_applied``),
then read the reports over HTTP. Each test uses its own ids and department path.
Time is a :class:`ManualClock` fixed at ``NOW`` (overdue tasks and "not followed up").
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from crm_platform.clock import ManualClock
from crm_platform.contracts import pipeline as pev
from crm_platform.events import EventEnvelope
from crm_platform.testing.backends import Backend
from crm_platform.testing.event_feed import NOW, EventFeed
from crm_platform.testing.fixtures import TEST_JWT_SECRET, eventually, running
from crm_reporting.adapters.readmodels import Generations
from crm_reporting.application.lag import LagTracker
from crm_reporting.main import create_app
from crm_reporting.settings import ReportingSettings


@pytest.fixture(scope="session")
def reporting_clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture(scope="session")
def reporting_settings(backend: Backend) -> ReportingSettings:
    suffix = uuid.uuid4().hex[:8]
    return ReportingSettings(
        kafka_bootstrap_servers=backend.kafka_bootstrap,
        kafka_enable_idempotence=backend.kafka_enable_idempotence,
        mongo_url=backend.mongo_url,
        mongo_database=f"crm_reporting_{suffix}",
        consumer_group_suffix=f".test-{suffix}",
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        log_format="console",
        log_level="WARNING",
        consumer_backoff_initial_seconds=0.05,
        consumer_max_attempts=3,
        generation_refresh_seconds=0.2,
    )


@pytest.fixture(scope="session")
async def reporting_app(reporting_settings: ReportingSettings, reporting_clock: ManualClock) -> AsyncIterator[FastAPI]:
    app = create_app(reporting_settings, reporting_clock)
    async with running(app, "http://reporting.test"):
        yield app


@pytest.fixture(scope="session")
async def client(reporting_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=reporting_app), base_url="http://reporting.test"
    ) as c:
        yield c


@pytest.fixture
def feed(producer: AIOKafkaProducer) -> EventFeed:
    return EventFeed(producer)


async def _applied(app: FastAPI, envelope: EventEnvelope) -> bool:
    generations: Generations = app.state.generations
    models = await generations.current()
    t = envelope.type
    if t.startswith("crm.user."):
        collection = models.directory.users
    elif t.startswith("crm.department."):
        collection = models.directory.departments
    elif t == pev.PIPELINE_CONFIGURED.name:
        collection = models.pipelines
    elif t == pev.TARGET_SET.name:
        collection = models.targets
    else:
        # The fact is written first, the states and rollups after it: wait for the whole event.
        lag: LagTracker = app.state.lag
        return lag.has_applied(envelope.id)
    doc = await collection.find_one({"_id": envelope.subject}, {"source_version": 1})
    return doc is not None and int(doc.get("source_version", 0)) >= envelope.aggregateversion


@pytest.fixture
def wait_applied(reporting_app: FastAPI) -> Any:
    async def wait(envelopes: list[EventEnvelope], timeout: float = 30.0) -> None:
        async def all_applied() -> bool:
            for envelope in envelopes:
                if not await _applied(reporting_app, envelope):
                    return False
            return True

        await eventually(all_applied, timeout=timeout, message=f"{len(envelopes)} events applied")

    return wait
