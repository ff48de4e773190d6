"""The customers service in-process, once per test session, against the session's Kafka and MongoDB."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from crm_customers.main import create_app
from crm_customers.settings import CustomersSettings
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import TEST_JWT_SECRET, EventCollector, collecting, database


def isolated_settings(backend: Backend, name: str) -> CustomersSettings:
    """Settings for a service of its own (its database and consumer group), for a test module whose
    definitions (custom fields, policies) must not reach the session's shared service."""
    return CustomersSettings(
        kafka_bootstrap_servers=backend.kafka_bootstrap,
        kafka_enable_idempotence=backend.kafka_enable_idempotence,
        mongo_url=backend.mongo_url,
        mongo_database=f"crm_customers_{name}_{uuid.uuid4().hex[:8]}",
        consumer_group_suffix=f".{name}-{uuid.uuid4().hex[:8]}",
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        log_format="console",
        log_level="WARNING",
    )


@pytest.fixture(scope="session")
def customers_settings(backend: Backend) -> CustomersSettings:
    return CustomersSettings(
        kafka_bootstrap_servers=backend.kafka_bootstrap,
        kafka_enable_idempotence=backend.kafka_enable_idempotence,
        mongo_url=backend.mongo_url,
        mongo_database=f"crm_customers_{uuid.uuid4().hex[:8]}",
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        log_format="console",
        log_level="WARNING",
        max_customers_per_rep=25,
        consumer_backoff_initial_seconds=0.05,
        consumer_max_attempts=3,
    )


@pytest.fixture(scope="session")
async def customers_app(customers_settings: CustomersSettings) -> AsyncIterator[FastAPI]:
    app = create_app(customers_settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="session")
async def client(customers_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=customers_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://customers.test") as c:
        yield c


@pytest.fixture(scope="session")
async def customer_events(backend: Backend, customers_app: FastAPI) -> AsyncIterator[EventCollector]:
    async with collecting(backend.kafka_bootstrap, ["crm.customers.v1"]) as collector:
        yield collector


@pytest.fixture(scope="session")
async def customers_db(backend: Backend, customers_settings: CustomersSettings) -> AsyncIterator[object]:
    async with database(backend.mongo_url, customers_settings.mongo_database) as db_:
        yield db_
