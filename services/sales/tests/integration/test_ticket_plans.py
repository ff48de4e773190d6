"""Every query tickets make is an index lookup or an index range on the embedded store (its SQLite
query plans, see crm_platform.testing.query_plans): opening one (the customer's read copy, the
year's counter, the insert), reading one, every guarded write (an assignment's look-up of the
assignee in the directory's copy too), every list shape (each sort, each filter, each visibility:
own, subtree, all; page 1 and the page after it; a customer's tickets), the SLA scheduler's poll
and claims, a ticket opened from a complaint, and a customer's merge (its tickets by customer).

The service runs against the traced store with a few hundred tickets and customers already stored
(so SQLite prefers a good index to a scan); customers and complaints reach it through its own
consumer handlers (``deliver``), not Kafka.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_platform.clock import ManualClock
from crm_platform.contracts import interactions as iev
from crm_platform.testing.backends import Backend
from crm_platform.testing.customer_feed import CustomerFeed
from crm_platform.testing.event_feed import EventFeed
from crm_platform.testing.fixtures import TEST_JWT_SECRET, auth, database
from crm_platform.testing.plans import KeepingProducer, assert_indexed, deliver
from crm_platform.testing.query_plans import TracedStore
from crm_sales.main import create_app
from crm_sales.settings import SalesSettings

ROWS = 200
REP_ID = "ticket-rep-plans"
REP = auth(REP_ID, ["rep"], department_path="/hq/plans")
MANAGER = auth("ticket-mgr-plans", ["manager"], department_path="/hq")
ADMIN = auth("ticket-admin-plans", ["admin"], department_path="/")
CLOCK = ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture(scope="module")
async def app(backend: Backend, traced_store: TracedStore) -> AsyncIterator[FastAPI]:
    suffix = uuid.uuid4().hex[:8]
    settings = SalesSettings(
        kafka_bootstrap_servers=backend.kafka_bootstrap,
        kafka_enable_idempotence=backend.kafka_enable_idempotence,
        mongo_url=traced_store.url,
        mongo_database=f"crm_sales_tplans_{suffix}",
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        log_format="console",
        log_level="WARNING",
        consumer_group_suffix=f".tplans-{suffix}",
        sales_ticket_scheduler_enabled=False,
    )
    application = create_app(settings, CLOCK)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="module")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sales.test") as c:
        yield c


@pytest.fixture(scope="module")
async def db(app: FastAPI, traced_store: TracedStore) -> AsyncIterator[Any]:
    async with database(traced_store.url, app.state.kit.settings.mongo_database) as db_:
        yield db_


async def post(client: httpx.AsyncClient, url: str, body: Any, headers: dict[str, str] = REP) -> dict[str, Any]:
    r = await client.post(url, json=body, headers=headers)
    assert r.status_code in (200, 201), r.text
    result: dict[str, Any] = r.json()
    return result


def ticket(customer_id: str, priority: str = "urgent") -> dict[str, Any]:
    return {"customer_id": customer_id, "category": "fault", "priority": priority, "subject": "计划"}


@pytest.fixture(scope="module")
async def filled(app: FastAPI, client: httpx.AsyncClient, db: Any) -> dict[str, Any]:
    """A customer of the rep's (and many others'), many tickets of other people and departments."""
    feed = CustomerFeed(KeepingProducer())  # type: ignore[arg-type]
    customer = await feed.created(owner_id=REP_ID, department_path="/hq/plans")
    assert await deliver(app, feed.published[-1]) == 1
    for i in range(ROWS):
        await feed.created(owner_id=f"someone-{i}", department_path=f"/hq/other{i % 7}")
        await deliver(app, feed.published[-1])
    users = EventFeed(KeepingProducer())  # type: ignore[arg-type]
    assert await deliver(app, await users.user(REP_ID + "-2", "接手人", "/hq/plans/field")) == 1
    made = await post(client, "/v1/tickets", ticket(customer.id))
    stored = await db["tickets"].find_one({"_id": made["id"]})
    base = {k: v for k, v in stored.items() if not k.startswith("outbox")}
    statuses = ("open", "in_progress", "resolved", "closed")
    rows = []
    for i in range(ROWS):
        row_id = f"{made['id']}-{i}"
        rows.append(
            {
                **base,
                "_id": row_id,
                "number": f"T-1999-{i + 1:06d}",
                "status": statuses[i % 4],
                "priority": ("urgent", "high", "normal", "low")[i % 4],
                "owner_id": f"someone-{i % 50}",
                "created_by": f"someone-{i % 30}",
                "department_path": f"/hq/other{i % 7}",
                "customer_id": f"c-{i % 40}",
                "breached": i % 3 == 0,
                "s": {
                    **base["s"],
                    "opened_at": base["s"]["opened_at"] - i,
                    "resolution_due_at": base["s"]["resolution_due_at"] + (i * 7919) % 97 * 60_000,
                    "priority": i % 4,
                    "check_at": 10**15 + i,
                    "id": row_id,
                },
            }
        )
    await db["tickets"].insert_many(rows)
    return {"customer": customer.id, "ticket": made["id"]}


async def test_opening_reading_and_changing_a_ticket_are_index_lookups(
    app: FastAPI, client: httpx.AsyncClient, filled: dict[str, Any], traced_store: TracedStore
) -> None:
    with traced_store.capture() as capture:
        made = await post(client, "/v1/tickets", ticket(filled["customer"]))
        url = f"/v1/tickets/{made['id']}"
        bad = {**ticket(filled["customer"]), "customer_id": "nobody"}
        assert (await client.post("/v1/tickets", json=bad, headers=REP)).status_code == 422
        assert (await client.get(url, headers=REP)).status_code == 200
        await post(client, f"{url}/assign", {"assignee_id": REP_ID + "-2"}, MANAGER)
        await post(client, f"{url}/replies", {"body": "收到"})
        await post(client, f"{url}/resolve", {"resolution": "好了"})
        await post(client, f"{url}/reopen", {})
        await post(client, f"{url}/resolve", {"resolution": "好了"})
        await post(client, f"{url}/return-visits", {"satisfaction": 5})
        await post(client, f"{url}/close", {})
        await app.state.kit.relay.drain()
    assert_indexed(capture)


async def test_every_list_shape_is_an_index_walk(
    client: httpx.AsyncClient, filled: dict[str, Any], traced_store: TracedStore
) -> None:
    queries = [
        "",
        "status=open",
        "priority=high",
        f"assignee_id={REP_ID}",
        "assignee_id=someone-3",
        f"customer_id={filled['customer']}",
        "customer_id=c-5",
        "breached=true",
        "breached=false&priority=low",
        "status=resolved&priority=normal",
        "status=open&breached=false",
        "status=in_progress&assignee_id=someone-2",
    ]
    with traced_store.capture() as capture:
        for who in (REP, MANAGER, ADMIN):
            for sort in ("-opened_at", "resolution_due", "priority"):
                for query in queries:
                    r = await client.get(f"/v1/tickets?limit=3&sort={sort}&{query}", headers=who)
                    assert r.status_code == 200, r.text
                    cursor = r.json()["next_cursor"]
                    if cursor:
                        r = await client.get(f"/v1/tickets?limit=3&sort={sort}&{query}&cursor={cursor}", headers=who)
                        assert r.status_code == 200, r.text
                r = await client.get(f"/v1/customers/{filled['customer']}/tickets?limit=2&sort={sort}", headers=who)
                assert r.status_code == 200, r.text
    assert_indexed(capture, unkeyed_sorts=True, row_filters=True)


async def test_the_scheduler_and_the_complaints_consumer_are_index_lookups(
    app: FastAPI, filled: dict[str, Any], traced_store: TracedStore
) -> None:
    now = datetime.now(UTC)
    feedback = iev.FeedbackSnapshot(
        feedback_id=str(uuid.uuid4()),
        kind="complaint",
        title="投诉",
        description="计划",
        customer_id=filled["customer"],
        status="open",
        reported_by=REP_ID,
        reporter_department_path="/hq/plans",
        opened_at=now,
        updated_at=now,
    )
    envelope = iev.FEEDBACK_OPENED.build(
        source="/crm/interactions",
        subject=feedback.feedback_id,
        data=iev.FeedbackOpened(feedback=feedback),
        aggregate_version=1,
        time=now,
        actor=REP_ID,
    )
    with traced_store.capture() as capture:
        assert await deliver(app, envelope) == 1
        assert await deliver(app, envelope) == 1  # a redelivery: one look-up by id
        CLOCK.advance(timedelta(hours=2))
        assert await app.state.ticket_scheduler.tick() >= 2
        assert await app.state.ticket_scheduler.tick() == 0
        await app.state.kit.relay.drain()
    assert_indexed(capture)


async def test_a_customers_merge_and_deletion_are_index_lookups(
    app: FastAPI, client: httpx.AsyncClient, filled: dict[str, Any], traced_store: TracedStore
) -> None:
    """A merge finds the duplicate's tickets by ``idx_customer_id`` and moves each by ``_id``; a
    ticket of a customer in the recycle bin still changes (one look-up of the ticket by ``_id``)."""
    feed = CustomerFeed(KeepingProducer())  # type: ignore[arg-type]
    survivor = await feed.created(owner_id=REP_ID, department_path="/hq/plans")
    duplicate = await feed.created(owner_id=REP_ID, department_path="/hq/plans")
    for envelope in feed.published:
        await deliver(app, envelope)
    made = [await post(client, "/v1/tickets", ticket(duplicate.id)) for _ in range(2)]
    with traced_store.capture() as capture:
        assert len(await app.state.tickets.ids_of_customer(duplicate.id)) == 2
        for envelope in await feed.merged(survivor, duplicate):
            assert await deliver(app, envelope) == 1
        await app.state.kit.relay.drain()
        await deliver(app, await feed.deleted(survivor))
        await post(client, f"/v1/tickets/{made[0]['id']}/replies", {"body": "仍在处理"})
    assert_indexed(capture)
    got = await client.get(f"/v1/tickets/{made[1]['id']}", headers=REP)
    assert got.json()["customer_id"] == survivor.id
