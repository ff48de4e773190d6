"""The interactions service in-process, once per test session, against the session's Kafka and MongoDB.

Customers, opportunities and users reach it the only way they can in production: as
events on ``crm.customers.v1``, ``crm.pipeline.v1`` and ``crm.directory.v1``, published
here with the contracts. Time is a :class:`ManualClock` the tests move forward (the
outbox relay and the scheduler run on it too), so days pass without sleeping.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from crm_interactions.main import create_app
from crm_interactions.settings import InteractionsSettings
from crm_platform.clock import ManualClock, SystemClock
from crm_platform.contracts import directory as directory_ev
from crm_platform.contracts import pipeline as pipeline_ev
from crm_platform.contracts.interactions import TOPIC
from crm_platform.events import EventEnvelope, to_kafka
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

PROBLEM = "application/problem+json"


@pytest.fixture(scope="session")
def interactions_settings(backend: Backend) -> InteractionsSettings:
    return InteractionsSettings(
        kafka_bootstrap_servers=backend.kafka_bootstrap,
        kafka_enable_idempotence=backend.kafka_enable_idempotence,
        mongo_url=backend.mongo_url,
        mongo_database=f"crm_interactions_{uuid.uuid4().hex[:8]}",
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        log_format="console",
        log_level="WARNING",
        consumer_backoff_initial_seconds=0.05,
        consumer_max_attempts=3,
        consumer_group_suffix=f".test-{uuid.uuid4().hex[:6]}",
        # The scheduler's loop looks often, so a test that moves the clock sees the notice soon.
        scheduler_poll_seconds=0.1,
    )


@pytest.fixture(scope="session")
def clock() -> ManualClock:
    return ManualClock(SystemClock().now())


@pytest.fixture(scope="session")
async def interactions_app(interactions_settings: InteractionsSettings, clock: ManualClock) -> AsyncIterator[FastAPI]:
    app = create_app(interactions_settings, clock)
    async with app.router.lifespan_context(app):
        kit = app.state.services.kit
        # A new consumer group gets its partitions a few seconds after start: wait once, here.
        await eventually(lambda: all(c.assigned() for c in kit.consumers), timeout=60, message="consumers assigned")
        yield app


@pytest.fixture(scope="session")
async def client(interactions_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=interactions_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://interactions.test") as c:
        yield c


@pytest.fixture(scope="session")
async def events(backend: Backend, interactions_app: FastAPI) -> AsyncIterator[EventCollector]:
    """Every event on crm.interactions.v1, read with a plain consumer (not our consumer code)."""
    async with collecting(backend.kafka_bootstrap, [TOPIC]) as collector:
        yield collector


@pytest.fixture(scope="session")
async def db(backend: Backend, interactions_settings: InteractionsSettings) -> AsyncIterator[Any]:
    async with database(backend.mongo_url, interactions_settings.mongo_database) as db_:
        yield db_


class User:
    def __init__(self, dept: str, roles: list[str] | None = None, prefix: str = "rep") -> None:
        self.id = unique(prefix)
        self.dept = dept
        self.roles = roles or ["rep"]
        self.headers = auth(self.id, self.roles, department_path=dept)

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
        self.stranger = User(f"/{unique('s')}/sales")
        self.admin = User("/", ["admin"], "admin")


@pytest.fixture
def team() -> Team:
    return Team()


async def _publish(producer: AIOKafkaProducer, topic: str, envelope: EventEnvelope) -> None:
    key, value, headers = to_kafka(envelope.model_dump(mode="json"))
    await producer.send_and_wait(topic, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()])


class World:
    """The other services, as seen from here: their events, and waiting until the copies hold them."""

    def __init__(self, producer: AIOKafkaProducer, db: Any) -> None:
        self.producer = producer
        self.db = db
        self.feed = CustomerFeed(producer)

    async def arrived(self, collection: str, doc_id: str, version: int, **expected: Any) -> dict[str, Any]:
        query = {"_id": doc_id, "source_version": version, **expected}
        found: dict[str, Any] = await eventually(
            lambda: self.db[collection].find_one(query), timeout=30, message=f"{collection} {doc_id} v{version}"
        )
        return found

    async def customer(self, owner: User | None, **kwargs: Any) -> FedCustomer:
        """A customer owned by ``owner``, with two contacts, already in the read copy."""
        kwargs.setdefault("contacts", ["张三", "李四"])
        customer = await self.feed.created(
            owner_id=owner.id if owner else None, department_path=owner.dept if owner else None, **kwargs
        )
        await self.arrived("customers", customer.id, customer.version)
        return customer

    async def customer_event(self, customer: FedCustomer, action: str, *args: Any, **expected: Any) -> None:
        """Publish one customers event (deleted, restored, merged ...) and wait until the copy has it."""
        await getattr(self.feed, action)(customer, *args)
        await self.arrived("customers", customer.id, customer.version, **expected)

    async def opportunity(self, customer: FedCustomer, owner: User, *, hidden: bool = False, version: int = 1) -> str:
        now = datetime.now(UTC)
        opportunity_id = str(uuid.uuid4())
        snapshot = pipeline_ev.OpportunitySnapshot(
            opportunity_id=opportunity_id,
            name=unique("商机"),
            customer_id=customer.id,
            currency="CNY",
            amount="100000.00",
            probability=20,
            pipeline_id="default",
            stage_id="initial",
            stage_name="初步接触",
            stage_kind="open",
            stage_entered_at=now,
            status="open",
            owner_id=owner.id,
            department_path=owner.dept,
            hidden=hidden,
            created_at=now,
            updated_at=now,
        )
        envelope = pipeline_ev.OPPORTUNITY_CREATED.build(
            source="/crm/pipeline",
            subject=opportunity_id,
            data=pipeline_ev.OpportunityCreated(opportunity=snapshot),
            aggregate_version=version,
            time=now,
            actor=owner.id,
        )
        await _publish(self.producer, pipeline_ev.TOPIC, envelope)
        await self.arrived("opportunities", opportunity_id, version)
        return opportunity_id

    async def user(self, user: User, status: str = "active") -> None:
        """Make ``user`` known to the directory copy (task assignees, feedback handlers)."""
        now = datetime.now(UTC)
        department_id = user.dept.rstrip("/").rsplit("/", 1)[-1] or "root"
        snapshot = directory_ev.UserSnapshot(
            user_id=user.id,
            email=f"{user.id}@example.com",
            name=user.id,
            roles=user.roles,  # type: ignore[arg-type]
            department_id=department_id,
            department_path=user.dept,
            status=status,  # type: ignore[arg-type]
            created_at=now,
            updated_at=now,
        )
        envelope = directory_ev.USER_CREATED.build(
            source="/crm/directory",
            subject=user.id,
            data=directory_ev.UserCreated(user=snapshot),
            aggregate_version=1,
            time=now,
            actor="admin",
        )
        await _publish(self.producer, directory_ev.TOPIC, envelope)
        await self.arrived("directory_users", user.id, 1)


@pytest.fixture(scope="session")
async def world(producer: AIOKafkaProducer, db: Any, interactions_app: FastAPI) -> World:
    return World(producer, db)


@pytest.fixture
def log(client: httpx.AsyncClient, clock: ManualClock) -> Any:
    """Log an interaction over HTTP; returns the created record (asserting 201)."""

    async def make(user: User, customer: FedCustomer, channel: str = "phone", **fields: Any) -> dict[str, Any]:
        body = {**body_for(channel, customer.id, clock.now() - timedelta(hours=1)), **fields}
        r = await client.post("/v1/interactions", json=body, headers=user.headers)
        assert r.status_code == 201, r.text
        created: dict[str, Any] = r.json()
        return created

    return make


def body_for(channel: str, customer_id: str, occurred_at: datetime) -> dict[str, Any]:
    """A valid request body for each channel."""
    common = {"channel": channel, "customer_id": customer_id, "occurred_at": occurred_at.isoformat()}
    extra: dict[str, dict[str, Any]] = {
        "phone": {"direction": "out", "duration_seconds": 420, "key_points": "预算已批", "objections": "价格偏高"},
        "email": {"subject": "报价单", "participants": ["chen@example.com"], "body_excerpt": "附件为报价"},
        "meeting": {"attendees": ["陈总", "王工"], "location": "线上", "minutes": "确认需求范围"},
        "visit": {"attendees": ["陈总"], "location": "杭州滨江区", "minutes": "现场演示"},
        "social": {"platform": "微信", "direction": "in", "content": "客户询问交付时间"},
        "note": {"content": "客户下周出差"},
    }
    return {**common, **extra[channel]}


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"].startswith("urn:crm:problem:")
    return body


@pytest.fixture
def expect_problem() -> Any:
    return problem


@pytest.fixture
def bodies() -> Any:
    return body_for


@pytest.fixture
def new_user() -> Any:
    """``new_user(dept, roles)``: a user with a fresh id and a token."""
    return User
