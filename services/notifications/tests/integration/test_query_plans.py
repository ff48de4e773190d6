"""Every event the notifications service consumes, and the inbox's pages, are index lookups on the
embedded store (its SQLite query plans, see crm_platform.testing.query_plans).

The service runs against the traced store with a few hundred notifications already in a user's
inbox (so SQLite prefers a good index to a scan); events are handed to its consumer handlers
(inbox and webhooks) inside a capture, and the store commands each costs are printed.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_notifications.main import create_app
from crm_notifications.settings import NotificationSettings
from crm_platform.contracts import customers, interactions, leads, sales
from crm_platform.contracts import directory as directory_ev
from crm_platform.events import EventEnvelope, EventType
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import auth, database, service_settings
from crm_platform.testing.plans import assert_indexed, consumer_commands, consumers_paused, deliver
from crm_platform.testing.query_plans import TracedStore

from ..notifications_testkit import customer, task

ROWS = 300
DEPT = "/hq/plans"
#: Its own per run: the module's app consumes the real topics, where other modules' apps publish
#: events about their "rep-plans" (a pool release notifies that owner), and the fixture below
#: counts on exactly one notification of its recipient.
REP = f"rep-plans-{uuid.uuid4().hex[:8]}"
REP_HEADERS = auth(REP, ["rep"], department_path=DEPT)


@pytest.fixture(scope="module")
async def app(backend: Backend, traced_store: TracedStore) -> AsyncIterator[FastAPI]:
    settings = NotificationSettings(
        **{**service_settings(backend, "notifications"), "mongo_url": traced_store.url},
        email_enabled=False,  # the sender's passes would land in the captures; it has its own tests
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="module")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notifications.test") as c:
        yield c


@pytest.fixture(scope="module")
async def db(app: FastAPI, traced_store: TracedStore) -> AsyncIterator[Any]:
    async with database(traced_store.url, app.state.kit.settings.mongo_database) as db_:
        yield db_


def build(event_type: EventType[Any], subject: str, data: Any) -> EventEnvelope:
    now = datetime.now(UTC)
    return event_type.build(source="/crm/test", subject=subject, data=data, aggregate_version=1, time=now, actor="t")


def user_created() -> EventEnvelope:
    now = datetime.now(UTC)
    snapshot = directory_ev.UserSnapshot(
        user_id=REP,
        email=f"{REP}@example.com",
        name="李雷",
        roles=["rep"],
        department_id="plans",
        department_path=DEPT,
        created_at=now,
        updated_at=now,
    )
    return build(directory_ev.USER_CREATED, REP, directory_ev.UserCreated(user=snapshot))


def owner_changed() -> EventEnvelope:
    c = customer(REP)
    return build(
        customers.OWNER_CHANGED,
        c.customer_id,
        customers.OwnerChanged(customer=c, previous_owner_id="u-old", owner_id=REP),
    )


def reminder() -> EventEnvelope:
    t = task(REP)
    return build(interactions.TASK_REMINDER_DUE, t.task_id, interactions.TaskReminderDue(task=t))


@pytest.fixture(scope="module")
async def filled(app: FastAPI, db: Any) -> None:
    await deliver(app, user_created())
    await deliver(app, owner_changed())
    [doc] = await db["notifications"].find({"recipient_id": REP}).to_list()
    await db["notifications"].insert_many(
        [{**doc, "_id": f"{doc['_id']}-{i}", "dedupe_key": f"{doc['dedupe_key']}-{i}"} for i in range(ROWS)]
    )


async def test_consumed_events_are_index_lookups(app: FastAPI, filled: None, traced_store: TracedStore) -> None:
    costs: dict[str, float] = {}
    async with consumers_paused(app):
        with traced_store.capture() as capture:
            for envelope in (owner_changed(), reminder()):
                before = consumer_commands()
                assert await deliver(app, envelope), envelope.type
                costs[envelope.type] = consumer_commands() - before
    assert_indexed(capture)
    print("notifications store commands per event:", costs)


async def test_inbox_pages_are_index_lookups(
    app: FastAPI, client: httpx.AsyncClient, filled: None, traced_store: TracedStore
) -> None:
    first = await client.get("/v1/notifications", params={"limit": 20}, headers=REP_HEADERS)
    assert first.status_code == 200, first.text
    cursor = first.json()["next_cursor"]
    assert cursor, "a second page exists"
    async with consumers_paused(app):
        with traced_store.capture() as capture:
            second = await client.get("/v1/notifications", params={"limit": 20, "cursor": cursor}, headers=REP_HEADERS)
            count = await client.get("/v1/notifications/unread-count", headers=REP_HEADERS)
    assert second.status_code == 200 and len(second.json()["items"]) == 20, second.text
    assert count.status_code == 200 and count.json()["unread"] >= ROWS + 1, count.text
    assert capture.statements
    # Every page after the first has one branch {created_ms: v, _id: {$gt: id}} (the cursor's
    # tie-break, crm_platform.listing.keyset_filter): the embedded store answers any range on
    # _id by reading the collection in sort order and filtering in Python (no WHERE, no LIMIT).
    # That needs a change in listing.py; every other statement must be a lookup.
    scans = [s for s in capture.scans() if not ("FROM notifications ORDER BY" in s.sql and " WHERE " not in s.sql)]
    assert not scans, "\n".join(s.describe() for s in scans)


def lead_events() -> list[EventEnvelope]:
    """A lead assigned to the rep, its conversion asked for, and refused (crm.leads.v1)."""
    now = datetime.now(UTC)
    snap = leads.LeadSnapshot(
        lead_id=f"lead-{now.timestamp()}", company_name="杭州云帆", owner_id=REP, department_path=DEPT,
        status="qualified", created_at=now, updated_at=now,
    )  # fmt: skip
    conversion = leads.Conversion(
        conversion_id=f"{snap.lead_id}:1", customer_id=f"c-{snap.lead_id}", existing_customer=False,
        customer_name=snap.company_name, owner_id=REP, requested_by=REP, requested_at=now,
    )  # fmt: skip
    assigned = leads.LeadOwnerChanged(lead=snap, previous_owner_id=None, owner_id=REP, how="assigned")
    failed = leads.LeadConversionFailed(lead=snap, conversion_id=conversion.conversion_id, step="customer", reason="x")
    return [
        build(leads.LEAD_OWNER_CHANGED, snap.lead_id, assigned),
        build(
            leads.LEAD_CONVERSION_REQUESTED,
            snap.lead_id,
            leads.LeadConversionRequested(lead=snap, conversion=conversion),
        ),
        build(leads.LEAD_CONVERSION_FAILED, snap.lead_id, failed),
    ]


async def test_lead_events_are_index_lookups(app: FastAPI, filled: None, traced_store: TracedStore) -> None:
    async with consumers_paused(app):
        with traced_store.capture() as capture:
            for envelope in lead_events():
                assert await deliver(app, envelope) == 2, envelope.type  # the inbox's handler and the webhooks'
    assert_indexed(capture)


def quotation_events() -> list[EventEnvelope]:
    now = datetime.now(UTC)
    line = sales.QuotationLine(
        product_id="p-plans",
        sku="P-1",
        name="产品",
        unit="套",
        quantity="1",
        unit_price="100.00",
        discount_percent="30",
        gross="100.00",
        discount="30.00",
        amount="70.00",
    )
    q = sales.QuotationSnapshot(
        quotation_id="q-plans",
        number="Q-2026-000001",
        revision=1,
        status="pending_approval",
        customer_id="c-plans",
        currency="CNY",
        valid_until=now.date(),
        lines=[line],
        subtotal="100.00",
        discount_total="30.00",
        total="70.00",
        needs_approval=True,
        owner_id="owner-plans",
        department_path=DEPT,
        created_at=now,
        updated_at=now,
    )
    decided = sales.QuotationDecided(quotation=q, comment="ok")
    return [
        build(sales.QUOTATION_SUBMITTED, q.quotation_id, decided),
        build(sales.QUOTATION_APPROVED, q.quotation_id, decided),
    ]


async def test_quotation_events_are_index_lookups(app: FastAPI, filled: None, traced_store: TracedStore) -> None:
    """The approvers are found by one equality on the directory copy's department_path per
    department from the quotation's up (the rep of /hq/plans is one candidate, not an approver)."""
    async with consumers_paused(app):
        with traced_store.capture() as capture:
            for envelope in quotation_events():
                assert await deliver(app, envelope) == 2, envelope.type  # the inbox's handler and the webhooks'
    assert_indexed(capture)


async def test_an_idle_delivery_round_is_index_lookups(app: FastAPI, traced_store: TracedStore) -> None:
    """The webhook worker's round with nothing due reads no subscription (it read them all,
    through an empty ``$in``, on every poll)."""
    async with consumers_paused(app):
        with traced_store.capture() as capture:
            assert await app.state.delivery_worker.run() == 0
    assert_indexed(capture)
    assert not [s for s in capture.statements if "FROM webhooks" in s.sql], capture.report()
