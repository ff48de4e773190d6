"""Every event the pool consumes is index lookups on the embedded store (its SQLite query plans,
see crm_platform.testing.query_plans), and what each costs in store commands.

The service runs against the traced store; a few hundred customers, opportunities and
interactions are applied first (so SQLite prefers a good index to a scan), then one event of
each kind the pool handles is handed to its consumer handlers inside a capture.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI

from crm_platform.clock import SystemClock
from crm_platform.contracts import customers as cev
from crm_platform.contracts import interactions as iev
from crm_platform.contracts import pipeline as pev
from crm_platform.events import EventEnvelope
from crm_platform.testing.backends import Backend
from crm_platform.testing.event_feed import EventFeed, customer, opportunity
from crm_platform.testing.fixtures import TEST_JWT_SECRET
from crm_platform.testing.plans import (
    KeepingProducer,
    assert_indexed,
    consumer_commands,
    consumers_paused,
    deliver,
    origin_commands,
)
from crm_platform.testing.query_plans import TracedStore
from crm_pool.main import create_app
from crm_pool.settings import PoolSettings

ROWS = 150
DEPT = "/hq/plans"
REP = "rep-plans"
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
async def app(backend: Backend, traced_store: TracedStore) -> AsyncIterator[FastAPI]:
    suffix = uuid.uuid4().hex[:8]
    settings = PoolSettings(
        kafka_bootstrap_servers=backend.kafka_bootstrap,
        kafka_enable_idempotence=backend.kafka_enable_idempotence,
        mongo_url=traced_store.url,
        mongo_database=f"crm_pool_plans_{suffix}",
        scheduler_enabled=False,  # its passes would land in the capture; it has its own tests
        consumer_group_suffix=f".plans-{suffix}",
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        log_format="console",
        log_level="WARNING",
    )
    application = create_app(settings, SystemClock())
    async with application.router.lifespan_context(application):
        yield application


def interaction(iid: str, cid: str) -> iev.InteractionLogged:
    snap = iev.InteractionSnapshot(
        interaction_id=iid,
        channel="phone",
        customer_id=cid,
        author_id=REP,
        author_department_path=DEPT,
        occurred_at=NOW,
        recorded_at=NOW,
        recorded_late=False,
        summary="跟进",
        updated_at=NOW,
    )
    return iev.InteractionLogged(
        interaction_id=iid, customer_id=cid, author_id=REP, channel="phone", occurred_at=NOW, interaction=snap
    )


async def one_of_each(feed: EventFeed) -> list[EventEnvelope]:
    """A customer's life as reporting sees it: created, updated, an opportunity, an interaction."""
    cid, oid = str(uuid.uuid4()), str(uuid.uuid4())
    snap = customer(cid, REP, DEPT, NOW, contacts=[cev.ContactData(contact_id=str(uuid.uuid4()), name="张三")])
    events = [
        await feed.send(
            cev.CUSTOMER_CREATED, cid, cev.CustomerCreated(customer=snap, contacts=snap_contacts(snap)), NOW, REP
        )
    ]
    snap.tier = "A"
    changes = [cev.FieldChange(field="tier", old=None, new="A")]
    events.append(
        await feed.send(cev.CUSTOMER_UPDATED, cid, cev.CustomerUpdated(customer=snap, changes=changes), NOW, REP)
    )
    opp = opportunity(oid, cid, REP, DEPT, "default", "initial", "1000.00", NOW, NOW, probability=10)
    events.append(await feed.send(pev.OPPORTUNITY_CREATED, oid, pev.OpportunityCreated(opportunity=opp), NOW, REP))
    events.append(
        await feed.send(iev.INTERACTION_LOGGED, str(uuid.uuid4()), interaction(str(uuid.uuid4()), cid), NOW, REP)
    )
    return events


def snap_contacts(snap: cev.CustomerSnapshot) -> list[cev.ContactData]:
    return [cev.ContactData(contact_id=str(uuid.uuid4()), name="张三", role="decision_maker")]


async def test_projected_events_are_index_lookups(app: FastAPI, traced_store: TracedStore) -> None:
    feed = EventFeed(KeepingProducer())  # type: ignore[arg-type]
    for _ in range(ROWS):
        for envelope in await one_of_each(feed):
            await deliver(app, envelope)
    envelopes = await one_of_each(feed)
    costs: dict[str, float] = {}
    async with consumers_paused(app):
        with traced_store.capture() as capture:
            for envelope in envelopes:
                before = consumer_commands()
                assert await deliver(app, envelope), envelope.type
                costs[envelope.type] = consumer_commands() - before
    # The rules and the stage positions (a handful of rows each) are read again whenever their
    # 2-second cache runs out, which a slow full test run meets inside this capture: not a scan
    # that grows with the customers. And the service's own consumers read the real topics, where
    # a full test run's other tests configure pipelines: new stage positions send every parked
    # clock back into the runs (``unpark_all``, then every clock recomputed), an administrator's
    # rare change that is proportional to the clocks by nature.
    capture.statements = [
        s
        for s in capture.statements
        if not re.search(r"\bFROM (pool_rules|stages)\b", s.sql)
        and not re.search(r"\bFROM (lead_)?clocks WHERE json_extract\(data, '\$\.parked_until_ms'\) > 0$", s.sql)
    ]
    assert_indexed(capture)
    print("pool store commands per event:", costs)
    # A new customer's cost, pinned (issue 13 counts every consumer's commands per create), under
    # an origin of its own: in a full run other services' consumers in this process count too.
    envelope = (await one_of_each(feed))[0]
    before = origin_commands("plan-pool")
    assert await deliver(app, envelope, origin="plan-pool"), envelope.type
    created = origin_commands("plan-pool") - before
    # 2: the clock's insert and the read copy's upsert; plus, when its 2-second cache has run
    # out (a full test run is slow enough), the live rules and stage positions read again (2).
    assert created <= 4, (created, costs)


async def test_lead_clocks_and_the_lead_sweep_are_index_lookups(app: FastAPI, traced_store: TracedStore) -> None:
    """Lead events applied to their clocks, and a run's lead sweep (one ``work_ms`` range per rule with lead
    settings, read page by page through a cursor), with a few hundred lead clocks stored."""
    from datetime import timedelta

    from crm_platform.contracts import leads as lev
    from crm_pool.domain.model import RuleCreate

    feed = EventFeed(KeepingProducer())  # type: ignore[arg-type]
    dept = f"{DEPT}/leads"
    long_ago = NOW - timedelta(days=60)

    def lead(lead_id: str, at: datetime, **fields: object) -> lev.LeadSnapshot:
        return lev.LeadSnapshot(
            lead_id=lead_id,
            company_name=f"计划线索{lead_id[:8]}",
            owner_id=REP,
            department_path=dept,
            status="new",
            created_at=at,
            updated_at=at,
            **fields,  # type: ignore[arg-type]
        )

    for i in range(ROWS):  # most worked recently, a few long ago
        lead_id = str(uuid.uuid4())
        at = long_ago if i % 30 == 0 else NOW
        await deliver(app, await feed.send(lev.LEAD_CREATED, lead_id, lev.LeadCreated(lead=lead(lead_id, at)), at))
    lead_id = str(uuid.uuid4())
    envelopes = [await feed.send(lev.LEAD_CREATED, lead_id, lev.LeadCreated(lead=lead(lead_id, NOW)), NOW)]
    followed = lev.LeadFollowedUp(
        lead=lead(lead_id, NOW, followup_count=1, last_followup_at=NOW), interaction_id="i-1", occurred_at=NOW
    )
    envelopes.append(await feed.send(lev.LEAD_FOLLOWED_UP, lead_id, followed, NOW))
    rule = {
        **RuleCreate(name="plans leads", department_path=dept, lead_no_work_days=30, lead_warn_days=3).model_dump(),
        "rule_id": "plans-leads",
        "deleted": False,
    }
    sweep = app.state.lead_recycling
    async with consumers_paused(app):
        with traced_store.capture() as capture:
            for envelope in envelopes:
                assert await deliver(app, envelope), envelope.type
            assert await deliver(app, envelopes[-1])  # redelivered: stale by version, nothing written
            found = await sweep.candidates([rule], NOW, parked=False)
            warned, decided, _ = await sweep.run([rule], NOW)
            await sweep.run([rule], NOW)  # the second run finds them parked
    assert_indexed(capture)
    assert len(found) == len(range(0, ROWS, 30)) and warned == len(found) and decided == 0
