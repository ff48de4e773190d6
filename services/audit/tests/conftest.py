"""The audit service in-process, once per test session, against the session's Kafka and MongoDB.

Tests publish the other services' events through the real broker with
``crm_platform.testing.event_feed.EventFeed`` (as those services would), wait until the
entry is stored, and read it over HTTP. Each test uses its own ids, so tests do not see
each other's entries. Time is a :class:`ManualClock` (the retention purge is driven by hand).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from crm_audit.main import create_app
from crm_audit.settings import AuditSettings
from crm_platform.clock import ManualClock
from crm_platform.testing.backends import Backend
from crm_platform.testing.event_feed import EventFeed
from crm_platform.testing.fixtures import TEST_JWT_SECRET, eventually, running


@pytest.fixture(scope="session")
def audit_clock() -> ManualClock:
    return ManualClock(datetime.now(UTC))


@pytest.fixture(scope="session")
def audit_settings(backend: Backend) -> AuditSettings:
    suffix = uuid.uuid4().hex[:8]
    return AuditSettings(
        kafka_bootstrap_servers=backend.kafka_bootstrap,
        kafka_enable_idempotence=backend.kafka_enable_idempotence,
        mongo_url=backend.mongo_url,
        mongo_database=f"crm_audit_{suffix}",
        consumer_group_suffix=f".test-{suffix}",
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        log_format="console",
        log_level="WARNING",
        consumer_backoff_initial_seconds=0.05,
        consumer_max_attempts=3,
        audit_purge_enabled=False,
        audit_export_max_rows=20,
    )


@pytest.fixture(scope="session")
async def audit_app(audit_settings: AuditSettings, audit_clock: ManualClock) -> AsyncIterator[FastAPI]:
    app = create_app(audit_settings, audit_clock)
    async with running(app, "http://audit.test"):
        yield app


@pytest.fixture(scope="session")
async def client(audit_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=audit_app), base_url="http://audit.test") as c:
        yield c


@pytest.fixture
def feed(producer: AIOKafkaProducer) -> EventFeed:
    return EventFeed(producer)


@pytest.fixture
def stored(audit_app: FastAPI) -> Any:
    """``await stored(entry_id)``: the entry once the consumer has kept it (fails after a deadline)."""

    async def wait(entry_id: str, timeout: float = 30.0) -> dict[str, Any]:
        repo = audit_app.state.repo
        doc: dict[str, Any] = await eventually(lambda: repo.get(entry_id), timeout=timeout, message=f"entry {entry_id}")
        return doc

    return wait
