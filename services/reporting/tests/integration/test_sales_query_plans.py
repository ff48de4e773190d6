"""The sales projection (contracts, plans, payments, refunds, tickets) and the five sales reports are
index lookups on the embedded store (see test_query_plans.py): a few hundred contracts and tickets are
projected first, then one of each event is delivered and every report is read as an admin, a manager
and a rep."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from crm_platform.clock import SystemClock
from crm_platform.contracts import sales as sev
from crm_platform.events import EventEnvelope
from crm_platform.testing.backends import Backend
from crm_platform.testing.event_feed import EventFeed
from crm_platform.testing.fixtures import TEST_JWT_SECRET, auth
from crm_platform.testing.plans import KeepingProducer, assert_indexed, deliver
from crm_platform.testing.query_plans import TracedStore
from crm_reporting.main import create_app
from crm_reporting.settings import ReportingSettings

ROWS = 120
DEPT = "/hq/salesplans"
REP = "rep-salesplans"
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
async def app(backend: Backend, traced_store: TracedStore) -> AsyncIterator[FastAPI]:
    suffix = uuid.uuid4().hex[:8]
    settings = ReportingSettings(
        kafka_bootstrap_servers=backend.kafka_bootstrap,
        kafka_enable_idempotence=backend.kafka_enable_idempotence,
        mongo_url=traced_store.url,
        mongo_database=f"crm_reporting_salesplans_{suffix}",
        consumer_group_suffix=f".salesplans-{suffix}",
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        log_format="console",
        log_level="WARNING",
    )
    application = create_app(settings, SystemClock())
    async with application.router.lifespan_context(application):
        yield application


async def one_of_each(feed: EventFeed) -> list[EventEnvelope]:
    cid, tid, customer = (str(uuid.uuid4()) for _ in range(3))
    c = sev.ContractSnapshot(
        contract_id=cid, number="C-2026-000001", customer_id=customer, owner_id=REP, department="d",
        department_path=DEPT, amount="300.00", currency="CNY", status="signed", signed_on=date(2026, 11, 2), version=0,
    )  # fmt: skip
    ids = [f"{cid}-{n}" for n in range(3)]
    plan = [
        sev.InstalmentState(
            instalment_id=i,
            due_date=date(2026, 10 + n, 1),
            amount="100.00",
            paid="0.00",
            outstanding="100.00",
            status="unpaid",
        )
        for n, i in enumerate(ids)
    ]

    def pay(amount: str, allocation: list[sev.Allocation], refund_id: str | None = None) -> sev.ContractPayment:
        return sev.ContractPayment(
            contract_id=cid, payment_id=f"{cid}-p", refund_id=refund_id, owner_id=REP, department_path=DEPT,
            customer_id=customer, amount=amount, currency="CNY", received_on=date(2026, 11, 5),
            allocation=allocation, contract=c,
        )  # fmt: skip

    t = sev.TicketSnapshot(
        ticket_id=tid, number="T-2026-000001", customer_id=customer, source="agent", category="fault",
        priority="high", subject="S", status="open", owner_id=REP, opened_by=REP, department_path=DEPT,
        opened_at=NOW, first_response_due_at=NOW + timedelta(hours=1), resolution_due_at=NOW + timedelta(hours=8),
        version=0,
    )  # fmt: skip
    done = t.model_copy(update={"status": "resolved", "resolved_at": NOW, "first_responded_at": NOW, "satisfaction": 4})
    return [
        await feed.send(sev.CONTRACT_CREATED, cid, sev.ContractChanged(contract=c), NOW),
        await feed.send(sev.CONTRACT_SIGNED, cid, sev.ContractDecided(contract=c), NOW),
        await feed.send(sev.CONTRACT_PLAN_SET, cid, sev.ContractPlanSet(contract=c, instalments=plan), NOW),
        await feed.send(
            sev.CONTRACT_PAYMENT_RECEIVED,
            cid,
            pay(
                "150.00",
                [
                    sev.Allocation(instalment_id=ids[0], amount="100.00"),
                    sev.Allocation(instalment_id=ids[1], amount="50.00"),
                ],
            ),
            NOW,
        ),
        await feed.send(
            sev.CONTRACT_PAYMENT_REFUNDED,
            cid,
            pay("20.00", [sev.Allocation(instalment_id=ids[1], amount="20.00")], refund_id=f"{cid}-r"),
            NOW,
        ),
        await feed.send(sev.TICKET_OPENED, tid, sev.TicketChanged(ticket=t), NOW),
        await feed.send(sev.TICKET_RETURN_VISITED, tid, sev.TicketChanged(ticket=done), NOW),
    ]


async def test_sales_events_and_reports_are_index_lookups(app: FastAPI, traced_store: TracedStore) -> None:
    feed = EventFeed(KeepingProducer())  # type: ignore[arg-type]
    for _ in range(ROWS):
        for envelope in await one_of_each(feed):
            await deliver(app, envelope)
    envelopes = await one_of_each(feed)
    admin, manager, rep = auth("boss", ["admin"], "/hq"), auth("mgr", ["manager"], DEPT), auth(REP, ["rep"], DEPT)
    day = NOW.date().isoformat()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://reporting.test") as client:
        with traced_store.capture() as capture:
            for envelope in envelopes:
                assert await deliver(app, envelope), envelope.type
            for headers in (admin, manager, rep):
                for path, params in (
                    ("/v1/reports/receivables/ageing", {"currency": "CNY", "as_of": "2026-12-10"}),
                    (
                        "/v1/reports/receivables/collection",
                        {"currency": "CNY", "from": "2026-10-01", "to": "2026-11-30"},
                    ),
                    ("/v1/reports/contracts/target", {"currency": "CNY", "period": "2026-Q4"}),
                    ("/v1/reports/tickets/sla", {"from": day, "to": day, "tz": "UTC"}),
                    ("/v1/reports/customers/lifetime-value", {"currency": "CNY", "limit": 5}),
                ):
                    r = await client.get(path, params=params, headers=headers)
                    assert r.status_code == 200, r.text
                    assert r.json()["rows"], (path, params)
    assert_indexed(capture)
