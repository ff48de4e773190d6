"""The lead and campaign projection and reports are index lookups on the embedded store (see
test_query_plans.py): a few hundred leads are projected first, then one event of each lead and
campaign kind is delivered and the three reports are read, as an admin, a manager and a rep."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import httpx
import pytest
from fastapi import FastAPI

from crm_platform.clock import SystemClock
from crm_platform.contracts import leads as lev
from crm_platform.contracts import pipeline as pev
from crm_platform.events import EventEnvelope
from crm_platform.testing.backends import Backend
from crm_platform.testing.event_feed import EventFeed, opportunity
from crm_platform.testing.fixtures import TEST_JWT_SECRET, auth
from crm_platform.testing.plans import KeepingProducer, assert_indexed, deliver
from crm_platform.testing.query_plans import TracedStore
from crm_reporting.main import create_app
from crm_reporting.settings import ReportingSettings

ROWS = 150
DEPT = "/hq/leadplans"
REP = "rep-leadplans"
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
async def app(backend: Backend, traced_store: TracedStore) -> AsyncIterator[FastAPI]:
    suffix = uuid.uuid4().hex[:8]
    settings = ReportingSettings(
        kafka_bootstrap_servers=backend.kafka_bootstrap,
        kafka_enable_idempotence=backend.kafka_enable_idempotence,
        mongo_url=traced_store.url,
        mongo_database=f"crm_reporting_leadplans_{suffix}",
        consumer_group_suffix=f".leadplans-{suffix}",
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        log_format="console",
        log_level="WARNING",
    )
    application = create_app(settings, SystemClock())
    async with application.router.lifespan_context(application):
        yield application


def campaign(cid: str) -> lev.CampaignSnapshot:
    money = lev.Money(amount="100.00", currency="CNY")
    return lev.CampaignSnapshot(
        campaign_id=cid,
        name="活动",
        channel="event",
        budget=money,
        start_date=date(2026, 1, 1),
        end_date=date(2026, 12, 31),
        owner_id=REP,
        department_path=DEPT,
        status="active",
        cost_total=money,
        created_at=NOW,
        updated_at=NOW,
    )


def lead(lid: str, cid: str, status: str = "new", **more: object) -> lev.LeadSnapshot:
    return lev.LeadSnapshot(
        lead_id=lid,
        company_name=f"公司 {lid[:8]}",
        source="expo",
        campaign_id=cid,
        owner_id=REP,
        department_path=DEPT,
        status=status,
        created_at=NOW,
        updated_at=NOW,
        **more,  # type: ignore[arg-type]
    )


async def one_of_each(feed: EventFeed) -> list[EventEnvelope]:
    cid, lid, oid = (str(uuid.uuid4()) for _ in range(3))
    c = campaign(cid)
    events = [await feed.send(lev.CAMPAIGN_CREATED, cid, lev.CampaignCreated(campaign=c), NOW)]
    changes = [lev.FieldChange(field="status", old="planned", new="active")]
    events.append(await feed.send(lev.CAMPAIGN_UPDATED, cid, lev.CampaignUpdated(campaign=c, changes=changes), NOW))
    cost = lev.CampaignCost(cost_id=str(uuid.uuid4()), amount=c.cost_total, date=NOW.date(), recorded_at=NOW)
    events.append(await feed.send(lev.CAMPAIGN_COST_ADDED, cid, lev.CampaignCostAdded(campaign=c, cost=cost), NOW))
    events.append(await feed.send(lev.LEAD_CREATED, lid, lev.LeadCreated(lead=lead(lid, cid)), NOW))
    moved = lev.LeadStatusChanged(lead=lead(lid, cid, "qualified"), from_status="new", to_status="qualified")
    events.append(await feed.send(lev.LEAD_STATUS_CHANGED, lid, moved, NOW))
    owner = lev.LeadOwnerChanged(lead=lead(lid, cid, "qualified"), previous_owner_id=None, owner_id=REP, how="claimed")
    events.append(await feed.send(lev.LEAD_OWNER_CHANGED, lid, owner, NOW))
    o = opportunity(oid, "c", REP, DEPT, "p", "won", "10.00", NOW, NOW, probability=100, status="won")
    o = o.model_copy(update={"lead_id": lid})
    events.append(await feed.send(pev.OPPORTUNITY_WON, oid, pev.OpportunityCreated(opportunity=o), NOW))
    done = lead(lid, cid, "converted", customer_id="c", opportunity_id=oid)
    converted = lev.LeadConverted(
        lead=done, conversion_id=f"{lid}:1", customer_id="c", opportunity_id=oid, existing_customer=False
    )
    events.append(await feed.send(lev.LEAD_CONVERTED, lid, converted, NOW))
    return events


async def test_lead_events_and_reports_are_index_lookups(app: FastAPI, traced_store: TracedStore) -> None:
    feed = EventFeed(KeepingProducer())  # type: ignore[arg-type]
    for _ in range(ROWS // 2):
        for envelope in await one_of_each(feed):
            await deliver(app, envelope)
    envelopes = await one_of_each(feed)
    admin, manager, rep = auth("boss", ["admin"], "/hq"), auth("mgr", ["manager"], DEPT), auth(REP, ["rep"], DEPT)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://reporting.test") as client:
        with traced_store.capture() as capture:
            for envelope in envelopes:
                assert await deliver(app, envelope), envelope.type
            for headers in (admin, manager, rep):
                for path, params in (
                    ("/v1/reports/campaigns", {"from": "2020-01-01", "channel": "event"}),
                    ("/v1/reports/campaigns", {"department": DEPT}),
                    ("/v1/reports/lead-sources", {"campaign_id": envelopes[0].subject}),
                    ("/v1/reports/campaigns", {"campaign_id": envelopes[0].subject}),
                    ("/v1/reports/lead-funnel", {"source": "expo", "department": DEPT}),
                ):
                    if headers is rep and "department" in params:
                        continue
                    r = await client.get(path, params=params, headers=headers)
                    assert r.status_code == 200, r.text
                    assert r.json()["rows"], (path, params)
    assert_indexed(capture)
