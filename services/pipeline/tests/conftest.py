"""The pipeline service in-process, once per test session, against the session's Kafka and MongoDB.

Customers reach it the only way they can in production: as customers events on
``crm.customers.v1`` (published here with the contracts by :class:`CustomerFeed`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_pipeline.main import create_app
from crm_pipeline.settings import PipelineSettings
from crm_platform.clock import SystemClock
from crm_platform.contracts.pipeline import TOPIC
from crm_platform.testing.backends import Backend
from crm_platform.testing.customer_feed import CustomerFeed, FedCustomer
from crm_platform.testing.fixtures import (
    TEST_JWT_SECRET,
    EventCollector,
    auth,
    collecting,
    database,
    eventually,
    unique,
)


@pytest.fixture(scope="session")
def pipeline_settings(backend: Backend) -> PipelineSettings:
    return PipelineSettings(
        kafka_bootstrap_servers=backend.kafka_bootstrap,
        kafka_enable_idempotence=backend.kafka_enable_idempotence,
        mongo_url=backend.mongo_url,
        mongo_database=f"crm_pipeline_{uuid.uuid4().hex[:8]}",
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        log_format="console",
        log_level="WARNING",
        consumer_backoff_initial_seconds=0.05,
        consumer_backoff_max_seconds=1.0,
        consumer_max_attempts=3,
        # A conversion command of another test's world (a customer this copy never gets) waits
        # parked; the parked ones are tried again often, so a test's own command does not wait long.
        lead_conversion_max_attempts=8,
        lead_conversion_resume_seconds=0.2,
        consumer_group_suffix=f".test-{uuid.uuid4().hex[:6]}",
    )


class OffsetClock:
    """The real time plus an offset the tests move forward: days pass without sleeping, and
    time never goes backwards (the outbox relay runs on this clock too)."""

    def __init__(self) -> None:
        self._system = SystemClock()
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return self._system.now() + self.offset

    def advance(self, delta: timedelta) -> None:
        assert delta >= timedelta(0), "time only moves forward"
        self.offset += delta


@pytest.fixture(scope="session")
def clock() -> OffsetClock:
    return OffsetClock()


@pytest.fixture(scope="session")
async def pipeline_app(pipeline_settings: PipelineSettings, clock: OffsetClock) -> AsyncIterator[FastAPI]:
    app = create_app(pipeline_settings, clock)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="session")
async def client(pipeline_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=pipeline_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pipeline.test") as c:
        yield c


@pytest.fixture(scope="session")
async def pipeline_events(backend: Backend, pipeline_app: FastAPI) -> AsyncIterator[EventCollector]:
    async with collecting(backend.kafka_bootstrap, [TOPIC]) as collector:
        yield collector


@pytest.fixture(scope="session")
async def pipeline_db(backend: Backend, pipeline_settings: PipelineSettings) -> AsyncIterator[Any]:
    async with database(backend.mongo_url, pipeline_settings.mongo_database) as db_:
        yield db_


@pytest.fixture(scope="session")
async def feed(producer: Any, pipeline_app: FastAPI) -> CustomerFeed:
    return CustomerFeed(producer)


class User:
    def __init__(self, dept: str, roles: list[str] | None = None, prefix: str = "rep") -> None:
        self.id = unique(prefix)
        self.dept = dept
        self.headers = auth(self.id, roles or ["rep"], department_path=dept)

    def match(self, etag: str) -> dict[str, str]:
        return {**self.headers, "If-Match": etag}


class Team:
    """A department with two reps, its manager, a manager elsewhere, and an admin."""

    def __init__(self) -> None:
        self.root = f"/{unique('t')}"
        self.rep = User(f"{self.root}/sales")
        self.rep2 = User(f"{self.root}/sales")
        self.manager = User(self.root, ["manager"], "mgr")
        self.outsider = User(f"/{unique('o')}", ["manager"], "other")
        self.admin = User("/", ["admin"], "admin")


@pytest.fixture
def team() -> Team:
    return Team()


async def customer_arrives(pipeline_db: Any, customer: FedCustomer, **expected: Any) -> dict[str, Any]:
    """Wait until the read copy holds the customer at its latest published version."""
    query = {"_id": customer.id, "source_version": customer.version, **expected}
    found: dict[str, Any] = await eventually(
        lambda: pipeline_db["customers"].find_one(query),
        timeout=30,
        message=f"customer {customer.id} v{customer.version}",
    )
    return found


@pytest.fixture
def arrives(pipeline_db: Any) -> Any:
    async def wait(customer: FedCustomer, **expected: Any) -> dict[str, Any]:
        return await customer_arrives(pipeline_db, customer, **expected)

    return wait


@pytest.fixture
async def customer_of(feed: CustomerFeed, arrives: Any) -> Any:
    """A customer owned by a user, with two contacts, already in the read copy."""

    async def make(user: User, **kwargs: Any) -> FedCustomer:
        kwargs.setdefault("contacts", ["张三", "李四"])
        customer = await feed.created(owner_id=user.id, department_path=user.dept, **kwargs)
        await arrives(customer)
        return customer

    return make


@pytest.fixture
def new_opportunity(client: httpx.AsyncClient, customer_of: Any) -> Any:
    """Create an opportunity over HTTP (for a new customer of ``user`` unless one is given)."""

    async def make(user: User, customer: FedCustomer | None = None, **fields: Any) -> dict[str, Any]:
        customer = customer or await customer_of(user)
        body = {"customer_id": customer.id, "name": unique("商机"), **fields}
        r = await client.post("/v1/opportunities", json=body, headers=user.headers)
        assert r.status_code == 201, r.text
        created: dict[str, Any] = r.json()
        return created

    return make


PROBLEM = "application/problem+json"


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


@pytest.fixture
def expect_problem() -> Any:
    return problem
