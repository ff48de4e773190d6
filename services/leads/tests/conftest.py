"""The leads service in-process, once per test session, against the session's Kafka and MongoDB.

Customers and users reach it the only way they can in production: as events on
``crm.customers.v1`` and ``crm.directory.v1``, published here through the real broker with
the contracts (``crm_platform.testing.event_feed.EventFeed``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from crm_leads.main import create_app
from crm_leads.settings import LeadsSettings
from crm_platform.testing.backends import Backend
from crm_platform.testing.event_feed import EventFeed
from crm_platform.testing.fixtures import service_settings


@pytest.fixture(scope="session")
def leads_settings(backend: Backend) -> LeadsSettings:
    return LeadsSettings(
        **service_settings(backend, "leads"),
        consumer_backoff_initial_seconds=0.05,
        consumer_max_attempts=3,
        import_max_rows=50,  # small, so a test reaches the import's limits
        import_max_bytes=64 * 1024,
    )


@pytest.fixture(scope="session")
async def leads_app(leads_settings: LeadsSettings) -> AsyncIterator[FastAPI]:
    from crm_platform.testing.fixtures import running

    app = create_app(leads_settings)
    async with running(app, "http://leads.test"):
        yield app


@pytest.fixture(scope="session")
async def client(leads_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=leads_app), base_url="http://leads.test") as c:
        yield c


@pytest.fixture
def feed(producer: AIOKafkaProducer) -> EventFeed:
    return EventFeed(producer)
